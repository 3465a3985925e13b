#!/usr/bin/env bash
# The Secrets the manifests read, printed as YAML (nothing is sent anywhere):
#
#   deploy/k8s/secrets.sh local      | kubectl apply -f -
#   deploy/k8s/secrets.sh production | kubectl apply -f -
#
# Both: wtm-keys (three fresh API keys: admin, service, executor; `wtm auth new-key`) and
# wtm-tls (a fresh private CA, a server certificate for registry and scheduler, the
# executors' client certificate; `wtm tls init`). Keep the admin key: it is printed nowhere
# else (kubectl get secret wtm-keys -o jsonpath='{.data.admin}' | base64 -d).
# local: wtm-local-backing (random passwords for the local overlay's MongoDB, MinIO and
#   Redis) and wtm-backing (the URIs that use them).
# production: wtm-backing from your environment: WTM_MONGODB_URI (a replica set URI),
#   WTM_REDIS_URL, WTM_S3_ENDPOINT, WTM_S3_ACCESS_KEY, WTM_S3_SECRET_KEY. Stores over TLS:
#   rediss://, ?tls=true, https://; a store whose certificate a public CA signed needs
#   nothing more. For a private CA set WTM_STORES_CA=/path/to/its.pem: it goes into wtm-tls
#   as stores-ca.pem (mounted at /tls), S3 is checked against it (WTM_S3_CA_FILE), and the
#   URLs name it: ?ssl_ca_certs=/tls/stores-ca.pem, &tlsCAFile=/tls/stores-ca.pem.
# Run it again to rotate everything (then restart the pods).
set -euo pipefail
mode=${1:?usage: secrets.sh local|production}
wtm=${WTM_CLI:-wtm}
case "$mode" in
  local) ns=wtm-local ;;
  production) ns=wtm ;;
  *) echo "secrets.sh: say local or production, not $mode" >&2; exit 2 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

secret() {  # name, then kubectl's --from-literal/--from-file arguments
  local name=$1
  shift
  kubectl create secret generic "$name" --namespace "$ns" "$@" --dry-run=client -o yaml \
    | grep -v '^  creationTimestamp: null$'
  echo ---
}
password() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

secret wtm-keys \
  --from-literal=admin="$($wtm auth new-key)" \
  --from-literal=service="$($wtm auth new-key)" \
  --from-literal=executor="$($wtm auth new-key)"
"$wtm" tls init "$tmp/tls" --host registry --host scheduler --host localhost >/dev/null
stores_ca=()
if [ "$mode" = production ] && [ -n "${WTM_STORES_CA:-}" ]; then
  [ -r "$WTM_STORES_CA" ] || { echo "secrets.sh: cannot read WTM_STORES_CA=$WTM_STORES_CA" >&2; exit 2; }
  stores_ca=(--from-file=stores-ca.pem="$WTM_STORES_CA")
fi
secret wtm-tls $(for f in ca.pem server.pem server.key executor.pem executor.key; do
  echo "--from-file=$f=$tmp/tls/$f"
done) "${stores_ca[@]}"

if [ "$mode" = local ]; then
  mongo=$(password) minio=$(password) redis=$(password)
  secret wtm-local-backing \
    --from-literal=mongo-password="$mongo" \
    --from-literal=minio-password="$minio" \
    --from-literal=redis-password="$redis"
  secret wtm-backing \
    --from-literal=WTM_MONGODB_URI="mongodb://wtm:$mongo@mongodb:27017/?authSource=admin" \
    --from-literal=WTM_REDIS_URL="redis://:$redis@redis:6379/0" \
    --from-literal=WTM_S3_ENDPOINT=http://minio:9000 \
    --from-literal=WTM_S3_ACCESS_KEY=wtm \
    --from-literal=WTM_S3_SECRET_KEY="$minio"
else
  for v in WTM_MONGODB_URI WTM_REDIS_URL WTM_S3_ENDPOINT WTM_S3_ACCESS_KEY WTM_S3_SECRET_KEY; do
    [ -n "${!v:-}" ] || { echo "secrets.sh: set $v (see the comment at the top)" >&2; exit 2; }
  done
  secret wtm-backing \
    --from-literal=WTM_MONGODB_URI="$WTM_MONGODB_URI" \
    --from-literal=WTM_REDIS_URL="$WTM_REDIS_URL" \
    --from-literal=WTM_S3_ENDPOINT="$WTM_S3_ENDPOINT" \
    --from-literal=WTM_S3_ACCESS_KEY="$WTM_S3_ACCESS_KEY" \
    --from-literal=WTM_S3_SECRET_KEY="$WTM_S3_SECRET_KEY" \
    ${stores_ca:+--from-literal=WTM_S3_CA_FILE=/tls/stores-ca.pem}
fi

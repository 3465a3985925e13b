"""Every RPC and every HTTP route, called with seeded random requests (edge strings, huge
and negative numbers, unknown enums, odd JSON), as a hostile or careless client would:
each answer is an answer — a status with a message, never INTERNAL, UNKNOWN or a dropped
call (gRPC), never a 5xx or a dropped connection (HTTP) — and the services keep serving.

The calls act as the admin of a namespace of their own, so whatever they manage to change
stays there. Requests are drawn from the messages' descriptors (``fill``), seeded per method,
so a failure repeats; each finding so far has its own regression test beside its fix
(test_hostile_input, test_gateway, test_hostile_parsers, test_sandbox)."""

from __future__ import annotations

import contextlib
import json
import random
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from google.protobuf import symbol_database
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from clients.sdk import Client
from services.common.auth import METHOD_PERMISSIONS
from services.localstack import Cluster
from tests.conftest import ROOT, keyed_channel
from wtm.v1 import (
    auth_service_pb2,
    registry_service_pb2,
    schedule_service_pb2,
    scheduler_service_pb2,
)

FIXTURES = ROOT / "tests" / "fixtures" / "tasks"
CALLS_PER_METHOD = 12
NAMESPACE = "fuzzed"

STRINGS = [
    "", "a", "word_count", "word_count@1.0.0", "word_count@", "@", "1.0.0", "latest", "-1",
    "x" * 5000, "ü" * 20_000, "\x00", "../../etc/passwd", "ü", " ", "*", "{", "null", "[]", "{}",
    "default", NAMESPACE, "a/b", "0123456789abcdef0123456789abcdef", "$where", '{"$gt": ""}',
    "COMPLETED", "STATE_RUNNING", "1733097600000-0", "artifact://sha256/" + "0" * 64 + "/a.png",
    '{"text": "fine"}', '{"text": 1e999}', '{"text": NaN}', "[" * 100, "\u202e",
]  # fmt: skip
INTS = [0, 1, -1, 7, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]
FLOATS = [0.0, -1.0, 0.5, float("nan"), float("inf"), 1e308]
BYTES = [b"", b"\x00", b"{", b'{"a": 1}', b"\xff\xfe", bytes(range(256))]
JSON_VALUES: list[Any] = [None, 1, -1, 1e300, "x", "", [1, 2], {"a": {"b": 1}}, True, "../x"]
SECONDS = [0, 1, -1, 2**40]  # Duration and Timestamp seconds: nothing that waits long


def fill(message: Message, rnd: random.Random, depth: int = 0) -> Message:
    """``message`` with about half its fields set to values drawn from the pools above."""
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Struct":
        for _ in range(rnd.randint(0, 3)):
            message.update({rnd.choice(STRINGS[:12]): rnd.choice(JSON_VALUES)})  # type: ignore[attr-defined]
        return message
    if name in ("google.protobuf.Duration", "google.protobuf.Timestamp"):
        message.seconds = rnd.choice(SECONDS)  # type: ignore[attr-defined]
        message.nanos = rnd.choice([0, 1, -1, 2**31 - 1])  # type: ignore[attr-defined]
        return message
    for field in message.DESCRIPTOR.fields:
        if rnd.random() < 0.45:
            continue
        if field.message_type is not None:
            if depth < 3:
                _fill_message_field(message, field, rnd, depth)
            continue
        values = [_scalar(field, rnd) for _ in range(rnd.choice([1, 2]))]
        try:
            if field.is_repeated:
                getattr(message, field.name).extend(values)
            else:
                setattr(message, field.name, values[0])
        except (TypeError, ValueError):
            pass  # out of the field's range: protobuf refuses it before it is sent
    return message


def _fill_message_field(
    message: Message, field: FieldDescriptor, rnd: random.Random, depth: int
) -> None:
    container = getattr(message, field.name)
    if field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        for _ in range(rnd.randint(0, 3)):
            key = _scalar(key_field, rnd)
            if value_field.message_type is not None:
                fill(container[key], rnd, depth + 1)
            else:
                with contextlib.suppress(TypeError, ValueError):
                    container[key] = _scalar(value_field, rnd)
    elif field.is_repeated:
        for _ in range(rnd.choice([0, 1, 2, 40])):
            fill(container.add(), rnd, depth + 1)
    else:
        fill(container, rnd, depth + 1)


def _scalar(field: FieldDescriptor, rnd: random.Random) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return rnd.choice(STRINGS)
    if kind == FieldDescriptor.TYPE_BYTES:
        return rnd.choice(BYTES)
    if kind == FieldDescriptor.TYPE_BOOL:
        return rnd.random() < 0.5
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rnd.choice(FLOATS)
    if kind == FieldDescriptor.TYPE_ENUM:
        return rnd.choice([v.number for v in field.enum_type.values] + [99, -5])
    return rnd.choice(INTS)  # int32/int64/uint...: protobuf refuses what does not fit


SERVICES = [
    (scheduler_service_pb2, "SchedulerService", "scheduler"),
    (schedule_service_pb2, "ScheduleService", "scheduler"),
    (registry_service_pb2, "RegistryService", "registry"),
    (auth_service_pb2, "AuthService", "registry"),
]
METHODS = [
    (module.DESCRIPTOR.services_by_name[service], method, server)
    for module, service, server in SERVICES
    for method in module.DESCRIPTOR.services_by_name[service].methods
]


def test_every_service_but_the_executors_stream_is_fuzzed() -> None:
    fuzzed = {f"/{service.full_name}/" for service, _, _ in METHODS}
    served = {method.rsplit("/", 1)[0] + "/" for method in METHOD_PERMISSIONS}
    assert served - fuzzed == {"/wtm.v1.ExecutorService/"}  # test_impostors.py


@pytest.fixture(scope="module")
def fuzzed_key(client: Client) -> str:
    client.register_task(FIXTURES / "word_count")
    _, key = client.create_api_key("fuzzed admin", "admin", NAMESPACE)
    return key


@pytest.fixture(scope="module")
def channels(cluster: Cluster, fuzzed_key: str) -> Iterator[dict[str, grpc.Channel]]:
    with (
        keyed_channel(cluster.scheduler_address, fuzzed_key) as scheduler,
        keyed_channel(cluster.registry_address, fuzzed_key) as registry,
    ):
        yield {"scheduler": scheduler, "registry": registry}


@pytest.mark.parametrize(
    ("service", "method", "server"), METHODS, ids=[m.name for _, m, _ in METHODS]
)
def test_random_requests_get_an_answer_naming_what_is_wrong(
    channels: dict[str, grpc.Channel], service: Any, method: Any, server: str
) -> None:
    symbols = symbol_database.Default()
    request_type = symbols.GetSymbol(method.input_type.full_name)
    reply_type = symbols.GetSymbol(method.output_type.full_name)
    path = f"/{service.full_name}/{method.name}"
    kind = (
        ("stream" if method.client_streaming else "unary")
        + "_"
        + ("stream" if method.server_streaming else "unary")
    )
    call = getattr(channels[server], kind)(
        path,
        request_serializer=request_type.SerializeToString,
        response_deserializer=reply_type.FromString,
    )
    rnd = random.Random(method.full_name)
    findings = []
    for _ in range(CALLS_PER_METHOD):
        requests = [fill(request_type(), rnd) for _ in range(rnd.randint(1, 3))]
        try:
            reply = call(iter(requests) if method.client_streaming else requests[0], timeout=20)
            if method.server_streaming:
                for count, _ in enumerate(reply):
                    if count >= 20:
                        reply.cancel()  # a watch of a live run: enough seen
                        break
        except grpc.RpcError as err:
            code, details = err.code(), err.details() or ""
            bad = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
            bad |= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
            if code in bad or (code != grpc.StatusCode.CANCELLED and not details):
                findings.append(f"{code.name}: {details[:200]} <- {requests[0]}"[:800])
    assert not findings, "\n".join(findings)


def test_random_http_calls_get_an_answer_naming_what_is_wrong(
    cluster: Cluster, client: Client, fuzzed_key: str
) -> None:
    rnd = random.Random("gateway")
    verify = ssl.create_default_context(cafile=str(cluster.ca_file))
    headers = {"Authorization": f"Bearer {fuzzed_key}", "Connection": "close"}
    with httpx.Client(
        base_url=cluster.gateway_url, verify=verify, headers=headers, timeout=30
    ) as http:
        spec = http.get("/openapi.json").json()
        schemas = spec.get("components", {}).get("schemas", {})
        findings = []
        for route, operations in spec["paths"].items():
            for verb, operation in operations.items():
                for _ in range(6):
                    url, params = route, {}
                    for parameter in operation.get("parameters", []):
                        value = rnd.choice(STRINGS)[:5000]  # httpx refuses a longer URL
                        if parameter["in"] == "path":
                            url = url.replace(
                                f"{{{parameter['name']}}}", quote(value, safe="") or "x"
                            )
                        elif rnd.random() < 0.6:
                            params[parameter["name"]] = value
                    body = None
                    if "requestBody" in operation:
                        schema = operation["requestBody"]["content"]["application/json"]["schema"]
                        body = json.dumps(_document(schema, schemas, rnd))
                    try:
                        reply = http.request(
                            verb.upper(), url, params=params, content=body,
                            headers={"Content-Type": "application/json"} if body else {},
                        )  # fmt: skip
                    except httpx.HTTPError as exc:
                        findings.append(f"{verb} {url}: {type(exc).__name__} <- {body}")
                        continue
                    if reply.status_code >= 500 or (reply.status_code >= 400 and not reply.text):
                        findings.append(f"{verb} {url}: {reply.status_code} <- {body}"[:600])
        assert http.get("/healthz").json() == {"status": "ok"}
    assert not findings, "\n".join(findings)
    list(client.list_runs(limit=1))  # the services still answer (this raises if not)


def _document(schema: dict[str, Any], schemas: dict[str, Any], rnd: random.Random) -> Any:
    """A JSON value shaped like ``schema`` (an OpenAPI schema) about 85% of the way."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    if rnd.random() < 0.15:
        return rnd.choice(JSON_VALUES + STRINGS[:10] + [2**70])
    if "anyOf" in schema:
        return _document(rnd.choice(schema["anyOf"]), schemas, rnd)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        fields = schema.get("properties", {})
        return {k: _document(v, schemas, rnd) for k, v in fields.items() if rnd.random() < 0.7}
    if kind == "array":
        return [_document(schema.get("items", {}), schemas, rnd) for _ in range(rnd.randint(0, 2))]
    if kind == "integer":
        return rnd.choice([0, 1, -1, 5, 2**63, 2**70])
    if kind == "number":
        return rnd.choice([0.5, -1, 1e308])
    if kind == "boolean":
        return rnd.random() < 0.5
    return rnd.choice(STRINGS)

"""Code shared by the clients (SDK, CLI) and the services: domain errors, artifact URIs and
references, TLS channels, task packages, JSON documents, run states, and the gRPC client
core. It depends on the generated ``wtm`` package and libraries only — never on
``services`` or ``clients`` — so both can use it without depending on each other."""

import os

# gRPC's fork handlers can hang a process that forks while its channels are busy
# (grpc/grpc#22624, #41759); our processes only fork to exec (the local stack's children,
# worker processes, pip), so the handlers are not needed. gRPC reads this when it is first
# imported, so it is set here, before any module of ours imports grpc: ``clients`` and
# ``services`` import this package first.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

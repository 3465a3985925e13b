"""The registry, scheduler and executor services, and the local stack."""

import os

# gRPC's fork handlers can hang a process that forks while its channels are busy
# (grpc/grpc#22624, #41759); our processes only fork to exec (the local stack's children,
# worker processes, pip), so the handlers are not needed. gRPC reads this when it is first
# imported, so it is set here, before any module of ours imports grpc (``clients`` imports
# this package first, for the same reason).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

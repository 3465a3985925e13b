"""A hand-made executor stream for tests that need to say what a real executor would not."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc

from services.localstack import Cluster
from tests.conftest import keyed_channel
from wtm.v1 import executor_service_pb2 as epb
from wtm.v1 import executor_service_pb2_grpc as epb_grpc


class FakeExecutor:
    """A hand-made executor stream: sends what it is told, collects what comes back."""

    def __init__(
        self,
        cluster: Cluster,
        executor_id: str,
        queues: list[str],
        key: str,
        with_certificate: bool = True,
        address: str = "",
        batched_messages: bool = False,
    ) -> None:
        self._outbox: queue.Queue[epb.ConnectRequest | None] = queue.Queue()
        self.received: list[epb.ConnectResponse] = []
        self.error: grpc.RpcError | None = None
        cert = cluster.executor_cert if with_certificate else None
        self._channel = keyed_channel(address or cluster.executor_address, key, client_cert=cert)
        hello = epb.ExecutorHello(
            executor_id=executor_id, queues=queues, slots=1000, batched_messages=batched_messages
        )
        self._outbox.put(epb.ConnectRequest(hello=hello))
        self._call = epb_grpc.ExecutorServiceStub(self._channel).Connect(self._requests())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[epb.ConnectRequest]:
        while (message := self._outbox.get()) is not None:
            yield message

    def _read(self) -> None:
        try:
            for message in self._call:
                self.received.append(message)
        except grpc.RpcError as exc:
            self.error = exc

    def send(self, message: epb.ConnectRequest) -> None:
        self._outbox.put(message)

    def close(self) -> None:
        self._outbox.put(None)
        self._call.cancel()
        self._reader.join(5)
        self._channel.close()

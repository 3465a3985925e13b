"""A TLS front for plain servers, as a managed Redis, MongoDB or S3 speaks TLS where the local
stack's valkey-server (built without TLS), nx-27017 and SeaweedFS (plain HTTP here) do not:
each listener terminates TLS with the certificate given and passes the bytes on to its
target, unchanged, over a plain socket on 127.0.0.1.

    python -m tests.tls_proxy CERT KEY LISTEN_PORT:TARGET_PORT [...]

Run as a child process of the test (stopped by its PID); prints ``ready`` once every
listener is bound."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _forward(target: int):  # noqa: ANN202 - an asyncio connection callback
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


async def main(cert: str, key: str, pairs: list[str]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    servers = []
    for pair in pairs:
        listen, target = (int(p) for p in pair.split(":"))
        servers.append(
            await asyncio.start_server(_forward(target), "127.0.0.1", listen, ssl=context)
        )
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))

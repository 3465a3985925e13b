"""nx-27017, the local stack's MongoDB, served a thread per connection.

``python -m services.localstack.nx_server --port P --data-dir D --log-file F``

nx-27017's own command serves each connection from an asyncio loop and hands every request
to a thread pool (``asyncio.to_thread``): two hand-offs between threads per request, which on
this project's two-core machines cost more than the request (docs/speed.md, session 55). Its
``--threaded`` mode reads, applies and answers each request on the connection's own thread,
but logs every answer at INFO. This serves the same handler in that mode with nx-27017's
log at WARNING. What it stores and answers is nx-27017's, unchanged.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from nx_27017.handler import NeoSQLiteHandler
from nx_27017.server import run_server_threaded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nx_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True, help="one SQLite file per database here")
    parser.add_argument("--log-file", required=True)
    args = parser.parse_args(argv)
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=args.log_file,
        level=logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # SIGTERM ends the process as a Ctrl-C would: the accept loop's finally closes the socket.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    handler = NeoSQLiteHandler(data_dir=args.data_dir)
    run_server_threaded(args.host, args.port, handler, use_threading=True)


if __name__ == "__main__":
    main()

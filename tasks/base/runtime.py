"""Loading a task package and running it: in a worker process, or in-process for tests.

The executor's worker processes run ``worker_main``; ``task test`` and unit tests use
``load_task`` directly. Messages on the pipe are tuples:

    executor -> worker:  ("run", input_json, meta) | ("batch", [input_json], [meta])
                         | None (retire)
                         meta: input_id, output_id, upstream_output_ids, artifacts,
                         threads (OpenCV's for this call)
    worker -> executor:  ("ready",) | ("setup_failed", error)
                         | ("progress", fraction, message) | ("log", level, message)
                         | (verdict, payload, (called, returned))
                         | ("batch_done", [(verdict, payload)], (called, returned))
                         verdict: "ok" (payload: output_json) | "failed" | "fatal" (error);
                         called/returned: wall-clock times around ``process()`` (or
                         ``process_batch()``)
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import re
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tasks.base import worker_wire as wire
from tasks.base.task_base import FatalError, TaskBase, TaskContext, one_per_input

# What a task's call may raise and still leave its worker serving: any error, and
# SystemExit (``sys.exit(1)`` in code written as a script). KeyboardInterrupt still ends the
# worker (the executor's Ctrl-C reaches its process group).
TASK_ERRORS = (Exception, SystemExit)


def load_task(
    package_dir: str | Path, entry_point: str = "", context: TaskContext | None = None
) -> TaskBase:
    """Import the task class named by ``entry_point`` from ``package_dir`` and build it."""
    package_dir = Path(package_dir).resolve()
    manifest = json.loads((package_dir / "task.json").read_text())
    entry_point = entry_point or manifest.get("entry_point", "task.Task")
    module_name, _, class_name = entry_point.rpartition(".")
    if str(package_dir) in sys.path:  # first, ahead of any other package loaded before it
        sys.path.remove(str(package_dir))
    sys.path.insert(0, str(package_dir))
    sys.modules.pop(module_name, None)  # a package's own 'task' module, not another's
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    ctx = context or TaskContext()
    ctx.task_id = ctx.task_id or manifest.get("task_id", "")
    ctx.manifest = manifest
    return cls(context=ctx)


def run_once(task: TaskBase, input_json: str) -> tuple[str, str]:
    """Run one input; returns (verdict, payload): ("ok", output_json) or an error verdict."""
    try:
        data = json.loads(input_json)
        task.validate_input(data)
        return _checked(task, task.process(data), "process()")
    except TASK_ERRORS as exc:  # FatalError or any other (retryable) failure
        return _failure(exc)


def run_batch(task: TaskBase, inputs: list[str]) -> list[tuple[str, str]]:
    """Run a dynamic batch: one (verdict, payload) per input, in order. An input that does
    not parse or fit the input schema fails alone and is left out of the call; an item that
    ``process_batch`` returns as an exception fails alone; if the call raises, or returns
    other than one item per input, every input it was given fails."""
    verdicts: list[tuple[str, str] | None] = [None] * len(inputs)
    given: list[int] = []
    documents = []
    for i, text in enumerate(inputs):
        try:
            data = json.loads(text)
            task.validate_input(data)
        except TASK_ERRORS as exc:
            verdicts[i] = _failure(exc)
            continue
        given.append(i)
        documents.append(data)
    if given:
        try:
            outputs = one_per_input(task.process_batch(documents), len(documents))
        except TASK_ERRORS as exc:  # the whole call failed: every input with it
            failed = _failure(exc)
            outputs = []
            for i in given:
                verdicts[i] = failed
        for i, output in zip(given, outputs, strict=False):
            verdicts[i] = (
                _failure(output)
                if isinstance(output, BaseException)
                else _checked(task, output, "process_batch()")
            )
    return [v or ("fatal", "no verdict") for v in verdicts]


# Half of a UTF-16 surrogate pair on its own (a pair is one character in a Python string).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _checked(task: TaskBase, output: Any, called: str) -> tuple[str, str]:
    """("ok", output_json) for an output that is a JSON object fitting the output schema."""
    try:
        if not isinstance(output, dict):
            raise FatalError(f"{called} must return a dict, returned {type(output).__name__}")
        try:
            text = json.dumps(output, allow_nan=False)
        except (ValueError, TypeError, RecursionError) as exc:  # NaN, Infinity, a set, ...
            raise FatalError(f"{called} returned a value that is not JSON: {exc}") from exc
        if "\\ud" in text or "\\uD" in text:  # an astral character, or half of one
            lone = _LONE_SURROGATE.search(json.dumps(output, ensure_ascii=False))
            if lone:
                raise FatalError(
                    f"{called} returned a string holding a lone surrogate ({lone.group()!a}), "
                    "which is not Unicode text"
                )
        if task.metadata.get("output_schema"):
            task.validate_output(json.loads(text))  # as it will travel (tuples are lists)
        return "ok", text
    except TASK_ERRORS as exc:
        return _failure(exc)


def _failure(exc: BaseException) -> tuple[str, str]:
    """The verdict of an input that failed with ``exc``: fatal for ``FatalError``, else
    retryable, with where in the task it was raised."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - the task's own __str__ failed: the worker must not
        text = "<its str() failed>"
    if isinstance(exc, FatalError):
        return "fatal", f"{type(exc).__name__}: {text}"
    tb = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f" at {Path(tb[0].filename).name}:{tb[0].lineno}" if tb else ""
    return "failed", f"{type(exc).__name__}: {text}{where}"


MAX_LOG_LINES = 200  # per input; the rest is counted, not sent
MAX_LOG_CHARS = 2000
_SENDING = threading.Lock()
LEVELS = logging.getLevelNamesMapping()


def _send(conn: Connection, header: list[Any], payloads: list[str] | tuple[()] = ()) -> None:
    """A message to the executor. Task threads report progress and log while the main
    thread may be sending a verdict: one message at a time, or their frames interleave."""
    with _SENDING:
        wire.send(conn, header, payloads)


class _PipeLogHandler(logging.Handler):
    """Sends what the task logs while an input runs up the pipe, bounded per input."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(logging.DEBUG)
        self.conn = conn
        self.active = False
        self.sent = 0
        self.dropped = 0

    def begin(self) -> None:
        self.active, self.sent, self.dropped = True, 0, 0

    def end(self) -> None:
        if self.dropped:
            _send(self.conn, ["log", "WARNING", f"{self.dropped} more log lines not kept"])
        self.active = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.active:
            return
        if self.sent >= MAX_LOG_LINES:
            self.dropped += 1
            return
        self.sent += 1
        _send(self.conn, ["log", record.levelname, self.format(record)[:MAX_LOG_CHARS]])


def _use_threads(threads: int | None) -> None:
    """OpenCV's threads for the next call, when the executor gave a number: its CPUs shared
    among the steps it runs at that moment (a step alone gets them all). Only OpenCV's pool
    can be resized between calls; BLAS and OpenMP keep the fixed share their environment
    variables gave (their threads spin while they wait, so more than a share hurts)."""
    cv2 = sys.modules.get("cv2")
    if threads and cv2 is not None and cv2.getNumThreads() != threads:
        cv2.setNumThreads(int(threads))


def worker_main(
    conn: Connection, package_dir: str, entry_point: str, extra_paths: tuple[str, ...] = ()
) -> None:
    """The body of a worker process: set the task up once, then serve inputs until retired.

    ``extra_paths`` (directories of requirements installed for this task) go first on
    ``sys.path``, so they win over what the executor's environment has. The executor
    confines the process before this runs (``services.executor.sandbox``).
    """
    sys.path[:0] = list(extra_paths)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s task %(levelname)s: %(message)s")

    def report(fraction: float, message: str) -> None:
        _send(conn, ["progress", float(fraction), str(message)[:MAX_LOG_CHARS]])

    context = TaskContext(report=report)
    to_pipe = _PipeLogHandler(conn)
    context.logger.addHandler(to_pipe)
    context.logger.propagate = False  # its lines are the step's already, not printed again
    context.logger.setLevel(logging.DEBUG)
    try:
        task = load_task(package_dir, entry_point, context)
        task.setup()
    except TASK_ERRORS as exc:
        _send(conn, ["setup_failed", _failure(exc)[1]])
        return
    _send(conn, ["ready"])
    inbox = wire.Inbox(conn)
    try:
        while True:
            header, inputs = inbox.receive()  # from the executor: ["stop"] or [kind, meta]
            if header[0] == "stop":
                break
            batch, meta = header[0] == "batch", header[1]
            context.begin_batch(meta) if batch else context.begin(meta)
            # The pipeline's global_settings.log_level, else everything the task logs (set
            # when it changes: setLevel clears the cache of every logger the process has).
            first = meta[0] if batch else meta
            wanted = first.get("log_level") or logging.DEBUG
            number = LEVELS.get(wanted, wanted) if isinstance(wanted, str) else wanted
            if number != context.logger.level:  # (the task itself may have set it)
                context.logger.setLevel(wanted)
            _use_threads(first.get("threads"))
            to_pipe.begin()
            called = time.time()
            verdicts = run_batch(task, inputs) if batch else [run_once(task, inputs[0])]
            returned = time.time()
            to_pipe.end()
            for stream in (sys.stdout, sys.stderr):  # what it printed, before its verdict
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            kinds, payloads = [v for v, _ in verdicts], [p for _, p in verdicts]
            header = ["batch_done", kinds] if batch else [kinds[0]]
            _send(conn, [*header, [called, returned]], payloads)
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        task.cleanup()

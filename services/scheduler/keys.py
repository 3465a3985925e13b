"""Every Redis key and channel the scheduler uses, under one prefix.

The Lua scripts derive per-run and per-step keys from the same prefix (passed as ARGV[1]),
so all names are defined here and in the scripts' headers, nowhere else. Scripts touch keys
they derive, so the scheduler needs a single Redis node (or one cluster hash slot).
"""

from __future__ import annotations

PREFIX = "wtm:"

LEASES = PREFIX + "leases"  # ZSET step-key -> lease deadline (ms)
DELAYED = PREFIX + "delayed"  # ZSET step-key -> due time of a retry (ms)
FAIR = PREFIX + "fair"  # HASH the fair share of new work between namespaces (lib.lua)
UNFINISHED = PREFIX + "unfinished"  # HASH namespace -> its runs not yet finished
DEADLINES = PREFIX + "deadlines"  # ZSET run id -> when it times out (ms; a run_timeout)
SIGNALS = PREFIX + "signals"  # ZSET step-key -> when its wait for a signal ends (ms)
WAKE_CHANNEL = PREFIX + "wake"  # pub/sub: "work was queued", for every scheduler replica
EXECUTORS = PREFIX + "executors"  # HASH executor id -> JSON of what ListExecutors shows
QUEUE_VARIANTS = PREFIX + "queues"  # SET of labelled queue variants ("default|gpu=true")
PLAIN_QUEUES = PREFIX + "plain-queues"  # SET of the other queues work was queued on ("vision")
EPOCH = PREFIX + "epoch"  # STRING set once per Redis dataset; gone means Redis lost its data
# ZSET a submit call's first run id -> when it was submitted (ms), until the call's MongoDB
# insert is known (``unrecorded_runs.py``): an entry still here long after is a submit whose
# insert never landed.
UNRECORDED = PREFIX + "unrecorded"
UNRECORDED_CHECK = PREFIX + "unrecorded-check"  # STRING: a replica is checking them (PX)
REST_ENDS = PREFIX + "rest-ends"  # HASH executor id -> an operator's ending of its rest (JSON)


def queue(name: str) -> str:
    """ZSET of ready step-keys on one queue, scored by priority band then enqueue time."""
    return f"{PREFIX}q:{name}"


def step_key(run_id: str, step_id: str) -> str:
    """The member that names one step of one run in queues, leases and the delayed set."""
    return f"{run_id}:{step_id}"


def step(run_id: str, step_id: str) -> str:
    """HASH of one step's state: task, attempt, state, dependencies, timings."""
    return f"{PREFIX}s:{run_id}:{step_id}"


def run(run_id: str) -> str:
    """HASH of one run's state: input, priority, counters, timings."""
    return f"{PREFIX}r:{run_id}"


def outputs(run_id: str) -> str:
    """HASH step-id -> output JSON of one run's completed steps."""
    return f"{PREFIX}o:{run_id}"


def held(run_id: str) -> str:
    """ZSET of a run's ready steps waiting for room under its max_parallel_tasks."""
    return f"{PREFIX}h:{run_id}"


def result_cache(namespace: str, key_hash: str) -> str:
    """STRING of a cached step output (JSON {output, from}), by namespace and the sha256 of
    task digest and canonical input (``result_cache.py``); expires after the cache TTL."""
    return f"{PREFIX}cache:{namespace}:{key_hash}"


def logs(run_id: str, step_id: str) -> str:
    """LIST of what the step's current attempt logged ("LEVEL text"), moved onto the step
    hash when the attempt ends."""
    return f"{PREFIX}l:{run_id}:{step_id}"


def events(run_id: str) -> str:
    """STREAM of one run's events, read by WatchRun (resumable by event id)."""
    return f"{PREFIX}e:{run_id}"


def rate(name: str) -> str:
    """STRING: when the next step of a rate-limited task ("<namespace>/<task_id>") may start
    (ms, the theoretical arrival time of GCRA; dispatch.lua), expiring once it has passed."""
    return f"{PREFIX}rate:{name}"


def places(name: str) -> str:
    """HASH step-key -> lease id: the steps holding a place of a task with a concurrency
    limit ("<namespace>/<task_id>"; lib.lua)."""
    return f"{PREFIX}places:{name}"


def place_waits(name: str) -> str:
    """ZSET step-key -> queue score: a concurrency-limited task's steps waiting for a place."""
    return f"{PREFIX}place-waits:{name}"


PLACE_LIMITS = PREFIX + "place-limits"  # HASH task name -> its limit, while steps wait for a place
# HASH of operators' task limits (SetTaskLimits, task_limits.py): "rate:<namespace>/<task_id>"
# -> ms between starts, "burst:…" -> starts at once, "conc:…" -> places; 0: none (over
# task.json's)
TASK_LIMITS = PREFIX + "task-limits"


def plan(key: str) -> str:
    """HASH run id -> its plan as submitted (run fields and steps, JSON, a newline between),
    for each run of the submit call indexed as ``key`` in ``UNRECORDED``, kept until the
    call's MongoDB insert is known, so that a run whose insert never landed can be recorded
    whole (``unrecorded_runs.py``)."""
    return f"{PREFIX}plan:{key}"


def idempotency(request_id: str) -> str:
    """STRING request-id -> run-id, so a repeated submit returns the first run."""
    return f"{PREFIX}idem:{request_id}"

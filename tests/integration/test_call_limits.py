"""A namespace's calls a second (WTM_CALLS_PER_SECOND) on a private scheduler: a team that
calls as fast as it can is refused past its burst, RESOURCE_EXHAUSTED naming the namespace,
and only it — another namespace's runs go on, and so does the executor's stream; an SDK
that retries waits out the refusal's pushback and gets through at the rate."""

from __future__ import annotations

import time
from pathlib import Path

from clients.sdk import ApiError, Client
from tests.conftest import shared_file
from tests.integration.ledger_fleet import Fleet, ledger_counts


def acting_in(fleet: Fleet, address: str, namespace: str, retry_seconds: float) -> Client:
    """A client of the session's admin key (every namespace) acting in ``namespace``."""
    return Client(
        fleet.cluster.registry_address,
        address,
        api_key=fleet.cluster.admin_key,
        namespace=namespace,
        retry_seconds=retry_seconds,
    )


def test_a_namespace_past_its_calls_a_second_is_refused_and_the_others_go_on(
    fleet: Fleet, shared_tmp: Path
) -> None:
    fleet.env["WTM_CALLS_PER_SECOND"] = "5"  # a burst of 10
    address = fleet.start_scheduler()
    fleet.start_executor(address, "limited-1")
    ledger = shared_file(shared_tmp, "ledger.txt")
    noisy = acting_in(fleet, address, "team-noisy", retry_seconds=0)
    with noisy, fleet.client(address, retry_seconds=0) as quiet:
        refused: list[ApiError] = []
        started = time.monotonic()
        for _ in range(30):
            try:
                noisy.list_queues()
            except ApiError as exc:
                refused.append(exc)
        passed = 30 - len(refused)
        assert 10 <= passed <= 10 + 5 * (time.monotonic() - started) + 1, passed
        assert {(e.code, e.field) for e in refused} == {("RESOURCE_EXHAUSTED", "namespace")}
        assert "'team-noisy' is making more than 5 calls a second" in refused[0].message
        # Another namespace (the default one) is not held back, nor is the executor's stream.
        doc = {"tag": "quiet", "ledger": str(ledger), "seconds": 0}
        assert quiet.run(task="ledger", input=doc).state == "COMPLETED"
        time.sleep(0.3)  # a token and a half
        noisy.list_queues()  # its rate again
    assert ledger_counts(ledger)["quiet"] == 1
    # The refusal carries gRPC's retry pushback; the SDK's retries wait it out: all pass, at
    # the namespace's rate once its burst is spent.
    patient = acting_in(fleet, address, "team-patient", retry_seconds=10)
    with patient:
        started = time.monotonic()
        for _ in range(25):
            patient.list_queues()
        assert time.monotonic() - started >= (25 - 10) / 5 - 0.5

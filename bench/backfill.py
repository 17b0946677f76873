"""A backfill of every captioned_shards partition, launched as the UI launches it, measured.

    python bench/backfill.py [--partitions 160] [--concurrency 2] [--variants before,after]

For each variant: a fresh ``DAGSTER_HOME`` with biocap's ``biocap_assets/dagster.yaml``
(plus the variant's changes), a world of ``--partitions`` small demo shards (the demo's four,
hard-linked under new names), ``dagster dev`` (webserver and daemon) in its own process
group, and one backfill of all partitions through the webserver's GraphQL API
(``launchPartitionBackfill``, the UI's own call). It waits for the backfill to finish and
reports, from the run storage's event timestamps:

- wall time from launch to the last run's end, and the workers' own seconds (the
  ``seconds`` column of ``shard_stats``: reading, captioning and writing the tar);
- the orchestration overhead per partition: ``wall x concurrency / partitions`` minus the
  mean worker seconds (what a partition costs beyond its own work, with the slots full);
- each run's breakdown (medians): queued, run process start, step start, worker start,
  worker, worker end to step success, run end;
- the first and last tenth of the runs side by side (flat in the partition count?);
- the daemon's peak RSS, and its RSS after the first and the last tenth;
- how long the asset's Partitions page takes to show all partitions (Chromium).

The ``gpu`` pool gets as many slots as runs may go at once (``dagster.yaml`` keeps 1 for a
laptop's one GPU; with one slot the second run would only wait for it). Variants
(``--variants``): ``before`` (the defaults before this bench existed: the
multiprocess executor and the queue's 5 s dequeue interval), ``after`` (this repo's
defaults), ``multi<N>`` (``after`` with N partitions per run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VARIANTS = {
    "before": {"env": {"BIOCAP_EXECUTOR": "multiprocess"}, "dequeue": 5},
    "after": {"env": {}, "dequeue": None},  # this repo's dagster.yaml and defaults
}

LAUNCH = """
mutation ($keys: [String!]!) {
  launchPartitionBackfill(backfillParams: {
    assetSelection: [{path: ["captioned_shards"]}], partitionNames: $keys, fromFailure: false
  }) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
STATUS = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numCancelable }
  }
}"""


def variant(name: str) -> dict:
    if name.startswith("multi"):
        return {"env": {"BIOCAP_PARTITIONS_PER_RUN": name[5:]}, "dequeue": None}
    return VARIANTS[name]


def graphql(base: str, query: str, variables: dict) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise RuntimeError(payload["errors"])
    return payload["data"]


def make_world(root: Path, partitions: int) -> str:
    """The demo world, and ``partitions`` shards hard-linked from its four."""
    from biocap_assets.demo.world import generate_demo_world

    world = generate_demo_world(root / "demo")
    folder = root / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    sources = world.train_shards
    for i in range(partitions):
        target = folder / f"shard-{i:06d}.tar"
        if not target.exists():
            os.link(sources[i % len(sources)], target)
    return f"{folder}/shard-{{000000..{partitions - 1:06d}}}.tar"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dev(home: Path, env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "dev",
        "-w",
        str(REPO / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited: see {log}")
        try:
            data = graphql(base, "{ repositoriesOrError { __typename } }", {})
            if data["repositoriesOrError"]["__typename"] == "RepositoryConnection":
                return process, base
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"dagster dev did not answer: see {log}")


def stop_group(process: subprocess.Popen) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def daemon_rss(root_pid: int) -> int:
    """RSS of the daemon process (``python -m dagster._daemon run`` under ``dagster dev``),
    bytes."""
    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for child in children:
        try:
            if "dagster._daemon" in " ".join(child.cmdline()):
                total += child.memory_info().rss
        except psutil.Error:
            continue
    return total


def partitions_page_seconds(base: str, partitions: int) -> float | None:
    """Seconds until the Partitions page shows every partition as materialized."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path("/usr/bin/chromium").exists():
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{base}/assets/captioned_shards")  # warm: the app's bundle
            page.wait_for_load_state("networkidle")
            started = time.perf_counter()
            page.goto(f"{base}/assets/captioned_shards?view=partitions")
            page.get_by_text(f"Materialized ({partitions})", exact=True).wait_for(timeout=120_000)
            return time.perf_counter() - started
        finally:
            browser.close()


def breakdown(dagster_home: Path, backfill_id: str) -> list[dict]:
    """Per run: the seconds between its lifecycle events, from the run storage."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    instance = dg.DagsterInstance.get()
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})
    )
    runs = []
    for record in records:
        first: dict[str, float] = {}
        last: dict[str, float] = {}
        for entry in instance.all_logs(record.dagster_run.run_id):
            if entry.dagster_event is not None:
                kind = entry.dagster_event.event_type_value
            elif "[pipes] external process successfully opened" in entry.user_message:
                kind = "PIPES_OPENED"
            elif "[pipes] external process" not in entry.user_message and " done: " in (
                entry.user_message
            ):
                kind = "WORKER_DONE"
            else:
                continue
            first.setdefault(kind, entry.timestamp)
            last[kind] = entry.timestamp
        runs.append({"status": record.dagster_run.status.value, "first": first, "last": last})
    return runs


def phases(run: dict) -> dict[str, float]:
    f, la = run["first"], run["last"]

    def span(a: str, b: str, start=f, end=f) -> float | None:
        return end[b] - start[a] if a in start and b in end else None

    return {
        "queued": span("PIPELINE_ENQUEUED", "PIPELINE_STARTING"),
        "run process start": span("PIPELINE_STARTING", "PIPELINE_START"),
        "step start": span("PIPELINE_START", "STEP_START"),
        "worker start": span("STEP_START", "PIPES_OPENED"),
        "worker": span("PIPES_OPENED", "WORKER_DONE", end=la),
        "worker end to step success": span("WORKER_DONE", "STEP_SUCCESS", start=la, end=la),
        "run end": span("STEP_SUCCESS", "PIPELINE_SUCCESS", start=la),
        "start to end": span("PIPELINE_STARTING", "PIPELINE_SUCCESS"),
    }


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def shard_seconds(biocap_home: Path) -> list[float]:
    import duckdb

    with duckdb.connect(str(biocap_home / "biocap.duckdb"), read_only=True) as connection:
        return [r[0] for r in connection.execute("SELECT seconds FROM shard_stats").fetchall()]


def run_variant(name: str, root: Path, shards_url: str, partitions: int, concurrency: int):
    spec = variant(name)
    home = root / name
    shutil.rmtree(home, ignore_errors=True)
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    config = yaml.safe_load((REPO / "biocap_assets" / "dagster.yaml").read_text())
    config["concurrency"]["runs"]["max_concurrent_runs"] = concurrency
    # the gpu pool as large as the run limit (as on a machine with that many GPUs), so
    # the runs, not the pool, are what is measured
    config["concurrency"]["pools"]["default_limit"] = concurrency
    if spec["dequeue"] is not None:
        config.setdefault("run_queue", {})["dequeue_interval_seconds"] = spec["dequeue"]
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BIOCAP_")},
        "BIOCAP_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "BIOCAP_SHARDS_URL": shards_url,
        "PYTHONUNBUFFERED": "1",
        **spec["env"],
    }
    # the demo world the definitions would build: share the one made for the shards
    os.symlink(root / "world" / "demo", home / "demo")
    process, base = start_dev(home, env, home / "dagster-dev.log")
    try:
        keys = [f"{i:06d}" for i in range(partitions)]
        launched = time.monotonic()
        result = graphql(base, LAUNCH, {"keys": keys})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(result)
        backfill = result["backfillId"]
        peak, samples = 0, []
        while True:
            rss = daemon_rss(process.pid)
            peak = max(peak, rss)
            samples.append(rss)
            status = graphql(base, STATUS, {"id": backfill})["partitionBackfillOrError"]
            if status["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED"):
                break
            if status["status"] in ("FAILED", "CANCELED"):
                raise RuntimeError(f"backfill {status}")
            time.sleep(2)
        noticed = time.monotonic() - launched
        page = partitions_page_seconds(base, partitions)
    finally:
        stop_group(process)
    runs = breakdown(dagster_home, backfill)
    starts = [r["first"].get("PIPELINE_ENQUEUED") for r in runs]
    ends = [r["last"].get("PIPELINE_SUCCESS") or r["last"].get("PIPELINE_FAILURE") for r in runs]
    wall = max(e for e in ends if e) - min(s for s in starts if s)
    worker = shard_seconds(home)
    runs.sort(key=lambda r: r["first"].get("PIPELINE_STARTING", 0))
    tenth = max(1, len(runs) // 10)
    return {
        "variant": name,
        "partitions": partitions,
        "runs": len(runs),
        "failed_runs": sum(r["status"] != "SUCCESS" for r in runs),
        "wall_s": wall,
        "until_backfill_completed_s": noticed,
        "worker_s_sum": sum(worker),
        "worker_s_mean": statistics.mean(worker) if worker else 0.0,
        "overhead_per_partition_s": wall * concurrency / partitions
        - (statistics.mean(worker) if worker else 0.0),
        "phases_median": {
            k: median(phases(r)[k] for r in runs) for k in phases({"first": {}, "last": {}})
        },
        "first_tenth_start_to_end_s": median(phases(r)["start to end"] for r in runs[:tenth]),
        "last_tenth_start_to_end_s": median(phases(r)["start to end"] for r in runs[-tenth:]),
        "daemon_peak_rss_mb": peak / 2**20,
        "daemon_rss_first_tenth_mb": median(samples[: max(1, len(samples) // 10)]) / 2**20,
        "daemon_rss_half_mb": samples[len(samples) // 2] / 2**20,
        "daemon_rss_last_tenth_mb": median(samples[-max(1, len(samples) // 10) :]) / 2**20,
        "partitions_page_s": page,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--partitions", type=int, default=160)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--variants", default="before,after")
    parser.add_argument("--root", help="working folder (default: a temporary one)")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="biocap-backfill-"))
    shards_url = make_world(root / "world", args.partitions)
    results = []
    for name in args.variants.split(","):
        print(f"variant {name}: backfilling {args.partitions} partitions...", flush=True)
        result = run_variant(name, root, shards_url, args.partitions, args.concurrency)
        results.append(result)
        print(json.dumps(result, indent=1, default=str), flush=True)
    print(f"\n{args.partitions} partitions, {args.concurrency} runs at once; working folder {root}")
    print(
        "| variant | wall (s) | worker s (sum) | overhead / partition (s) | runs failed | "
        "first 10% run (s) | last 10% run (s) | daemon peak RSS (MB) | Partitions page (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        page = f"{r['partitions_page_s']:.1f}" if r["partitions_page_s"] else "n/a"
        print(
            f"| {r['variant']} | {r['wall_s']:.0f} | {r['worker_s_sum']:.1f} | "
            f"{r['overhead_per_partition_s']:.2f} | {r['failed_runs']} | "
            f"{r['first_tenth_start_to_end_s']:.2f} | {r['last_tenth_start_to_end_s']:.2f} | "
            f"{r['daemon_peak_rss_mb']:.0f} | {page} |"
        )
    if len(results) > 1:
        base = results[0]["overhead_per_partition_s"]
        for r in results[1:]:
            print(
                f"overhead ratio {r['variant']} / {results[0]['variant']}: "
                f"{r['overhead_per_partition_s'] / base:.2f}"
            )
    print("\nmedian seconds per run phase:")
    print("| phase | " + " | ".join(r["variant"] for r in results) + " |")
    print("| --- |" + " ---: |" * len(results))
    for phase in results[0]["phases_median"]:
        cells = " | ".join(f"{r['phases_median'][phase]:.2f}" for r in results)
        print(f"| {phase} | {cells} |")


if __name__ == "__main__":
    main()

"""The Dagster UI as a user drives it, in a real browser (Debian's Chromium + Playwright).

Starts `dagster dev` on 127.0.0.1 with a temporary DAGSTER_HOME and the demo world,
then: finds every asset in the global lineage graph, materializes `taxa_table` from
its page, backfills two `captioned_shards` partitions from the launch dialog, waits
for both, and checks the partition status and the metadata the UI shows. Screenshots
land in ``$BIOCAP_UI_SCREENSHOTS`` (default: the test's temp folder).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from biocap_assets_tests.conftest import BIOCAP_ENV
from biocap_assets_tests.dagster_dev import dagster_dev, graphql, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ASSETS = (
    "taxa_table",
    "wiki_pages",
    "visual_descriptions",
    "captioned_shards",
    "clip_checkpoint",
    "eval_images",
    "eval_reports",
    "model_weights",
)
BACKFILL = ("000000", "000001")

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]

PARTITION_STATUS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetPartitionStatuses {
        ... on DefaultPartitionStatuses {
          materializedPartitions failedPartitions materializingPartitions
        }
      }
    }
  }
}"""
LATEST_MATERIALIZATION = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 1) { runId } }
  }
}"""


def _same_name(asset: str, shown: str) -> bool:
    """The graph truncates long names in the middle: ``visu…_descriptions``."""
    if "…" not in shown:
        return shown.strip() == asset
    head, tail = shown.strip().split("…", 1)
    return asset.startswith(head) and asset.endswith(tail)


def _settled(base_url: str, keys: tuple[str, ...]) -> dict | None:
    """Partition statuses once every key is materialized or failed, else None."""
    node = graphql(base_url, PARTITION_STATUS, {"path": ["captioned_shards"]})["assetNodeOrError"]
    statuses = node["assetPartitionStatuses"]
    done = set(statuses["materializedPartitions"]) | set(statuses["failedPartitions"])
    return statuses if done >= set(keys) else None


def _click_until_checked(row, opener) -> bool:
    """Click a partition row of the launch dialog's menu; True once its box is checked."""
    try:
        if not row.count():  # the menu closed or is re-rendering: open it (again)
            opener.click(timeout=5_000)
            return False
        checkbox = row.get_by_role("checkbox")
        if not checkbox.is_checked(timeout=5_000):
            row.click(timeout=5_000)
        return checkbox.is_checked(timeout=5_000)
    except sync_api.TimeoutError:
        return False


def _skip_community_dialog(page) -> None:
    """A fresh DAGSTER_HOME greets the first visit with "Join the Dagster community"."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=10_000)
    except sync_api.TimeoutError:
        return
    skip.click()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BIOCAP_UI_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def ui(tmp_path: Path, demo_world):
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(demo_world.root, home / "demo")
    log = tmp_path / "dagster-dev.log"
    try:
        with dagster_dev(home, log) as base_url:
            yield base_url, home
    finally:
        if log.exists():
            shutil.copy(log, tmp_path / "dagster-dev.kept.log")


@pytest.fixture(scope="module")
def demo_ui(tmp_path_factory: pytest.TempPathFactory, demo_world):
    """The whole demo graph materialized by `biocap demo`, then shown by `dagster dev`
    (one of each for the tests of this module that read what the demo left)."""
    tmp_path = tmp_path_factory.mktemp("demo_ui")
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(demo_world.root, home / "demo")
    with pytest.MonkeyPatch.context() as monkeypatch:
        # module-scoped, so conftest's per-test clean-up has not run yet: do it here
        for name in (*BIOCAP_ENV, "DAGSTER_HOME"):
            monkeypatch.delenv(name, raising=False)
        # `biocap demo` keeps its runs in $BIOCAP_HOME/dagster, where dagster_dev looks too
        env = {**os.environ, "BIOCAP_HOME": str(home)}
        biocap = str(Path(sys.executable).with_name("biocap"))
        demo = subprocess.run(
            [biocap, "demo"], env=env, timeout=900, capture_output=True, text=True
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        with dagster_dev(home, tmp_path / "dagster-dev.log") as base_url:
            yield base_url, demo.stdout + demo.stderr, home


JOB_RUNS = """
query ($job: String!) {
  pipelineOrError(params: {pipelineName: $job, repositoryName: "__repository__",
                           repositoryLocationName: "biocap"}) {
    ... on Pipeline { pipelineSnapshotId runs { runId status pipelineSnapshotId } }
  }
}"""
SENSOR_TICKS = """
{ sensorOrError(sensorSelector: {repositoryName: "__repository__",
    repositoryLocationName: "biocap", sensorName: "evaluate_new_checkpoints"}) {
    ... on Sensor { sensorState { ticks(limit: 10) { status runIds } } } } }"""
ALL_RUNS = "{ runsOrError { ... on Runs { results { runId } } } }"


def _open_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def _shown_image_width(page, metadata_key: str) -> int:
    """Natural width of the image in a Markdown metadata entry (0: did not render)."""
    row = page.locator("tr").filter(has=page.get_by_text(metadata_key, exact=True)).first
    show = row.get_by_text("[Show Markdown]")
    if show.count():  # long Markdown opens in a dialog
        show.click()
        image = page.get_by_role("dialog").locator("img").first
    else:
        image = row.locator("img").first
    sync_api.expect(image).to_be_visible()
    # the state, not the clock: wait until the browser has decoded it (or given up on it)
    image.evaluate(
        "img => img.complete || new Promise(done => {"
        " img.addEventListener('load', done); img.addEventListener('error', done); })"
    )
    return int(image.evaluate("img => img.naturalWidth"))


@contextmanager
def _browser_page():
    """A page of a headless Chromium, closed on the way out."""
    with sync_api.sync_playwright() as playwright:
        browser = _open_browser(playwright)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


@pytest.fixture
def page(ui):
    with _browser_page() as page:
        yield page


def test_materialize_and_backfill_from_the_ui(ui, page, screenshots: Path) -> None:
    base_url, home = ui
    expect = sync_api.expect

    # 1. The global asset graph shows every asset once its groups are expanded.
    page.goto(f"{base_url}/asset-groups")
    _skip_community_dialog(page)
    for group in ("taxa", "wiki", "descriptions", "captions", "training", "evaluation", "models"):
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    page.keyboard.press("Alt+e")  # the graph's "Expand all groups" shortcut
    names = page.locator("[class*=AssetNode_assetName]")
    expect(names).to_have_count(len(ASSETS))
    shown = names.all_inner_texts()
    for asset in ASSETS:
        assert any(_same_name(asset, name) for name in shown), (asset, shown)
    page.screenshot(path=screenshots / "asset-graph.png")

    # 2. Materialize taxa_table from its page, then read its metadata there.
    page.goto(f"{base_url}/assets/taxa_table")
    page.get_by_role("button", name=re.compile(r"Materialize$")).click()
    wait_for(
        "a taxa_table materialization",
        lambda: graphql(base_url, LATEST_MATERIALIZATION, {"path": ["taxa_table"]})["assetOrError"][
            "assetMaterializations"
        ],
        every=2.0,
    )
    page.goto(f"{base_url}/assets/taxa_table?view=events")
    events = page.locator("main, body").first
    for key in ("catalog_rows", "taxa", "ambiguous_binomials", "preview", "dagster/row_count"):
        expect(events.get_by_text(key, exact=True).first).to_be_visible()
    taxa_row = page.locator("tr").filter(has=page.get_by_text("taxa", exact=True))
    expect(taxa_row.first).to_contain_text("32")  # the demo world's distinct taxa
    page.screenshot(path=screenshots / "taxa-table.png", full_page=True)

    # 3. Backfill two captioned_shards partitions from the launch dialog.
    page.goto(f"{base_url}/assets/captioned_shards")
    page.get_by_role("button", name=re.compile(r"Materialize…$")).first.click()
    # visual_descriptions was never materialized: the UI asks first (captions then go
    # without a reference description, which the run logs as a warning)
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Launch runs to materialize captioned_shards")).to_be_visible()
    opener = page.get_by_role("dialog").locator("[class*=TagSelector_tagSelectorContainer]")
    expect(opener).to_contain_text("Select a partition or create one")
    opener.click()
    partition_menu = page.locator(".dagster-popover")
    # the menu is a virtualized table that re-renders its rows while it loads the partition
    # statuses; a click on a row that is being replaced is lost, so each key is clicked
    # until its checkbox shows the selection
    expect(partition_menu.get_by_text("Select all (5)")).to_be_visible()  # 4 train, 1 val
    for key in BACKFILL:
        row = partition_menu.get_by_role("menuitem").filter(has=page.get_by_text(key, exact=True))
        wait_for(
            f"partition {key} selected",
            lambda row=row: _click_until_checked(row, opener),
            timeout=60.0,
            every=0.5,
        )
    page.keyboard.press("Escape")  # close the partition menu, keep the launch dialog
    expect(page.get_by_text("2 partitions", exact=True)).to_be_visible()
    page.screenshot(path=screenshots / "backfill-dialog.png")
    page.get_by_role("button", name="Launch backfill").click()
    statuses = wait_for(
        "both backfilled partitions",
        lambda: _settled(base_url, BACKFILL),
        every=2.0,
    )
    assert sorted(statuses["materializedPartitions"]) == sorted(BACKFILL), statuses

    # 4. The partition status and a partition's metadata, as the UI shows them.
    page.goto(f"{base_url}/assets/captioned_shards?view=partitions")
    for status in ("Materialized (2)", "Missing (3)", "Failed (0)"):
        expect(page.get_by_text(status, exact=True)).to_be_visible()
    page.get_by_text(BACKFILL[0], exact=True).first.click()
    for key in ("path", "samples", "captioned", "backend", "cpu_fallback", "sample_captions"):
        expect(page.get_by_text(key, exact=True).first).to_be_visible()
    page.screenshot(path=screenshots / "partitions.png", full_page=True)

    # 5. The run's logs carry the worker's progress (done / total, rate, ETA).
    page.get_by_role("link", name=re.compile("^[0-9a-f]{8}$")).first.click()
    expect(
        page.get_by_text(re.compile(rf"shard {BACKFILL[0]}: .* MB/s, ETA")).first
    ).to_be_visible()
    page.screenshot(path=screenshots / "run-logs.png")


def test_the_demos_runs_belong_to_the_served_code_location(demo_ui, screenshots) -> None:
    """`biocap demo` then `make dev`: the demo's runs on the job pages, with the served
    job's own snapshot (re-execution without a version warning), and the automation
    sensor does not evaluate the checkpoint the demo already evaluated."""
    base_url, printed, _ = demo_ui
    # quiet by default: a line per step and the summary, no warnings or debug events
    lines = printed.splitlines()
    assert len(lines) < 60, printed
    assert not [line for line in lines if "Warning" in line or " - DEBUG - " in line], printed
    assert sum(line.startswith("ok ") for line in lines) >= 9, printed
    demo_runs = {r["runId"] for r in graphql(base_url, ALL_RUNS)["runsOrError"]["results"]}
    assert len(demo_runs) == 7, demo_runs  # text, four shards and the val shard, train+eval
    for job in ("prepare_text", "caption_backfill", "train_and_evaluate"):
        served = graphql(base_url, JOB_RUNS, {"job": job})["pipelineOrError"]
        assert served["runs"], f"{job}: the job's page would say 'No runs found'"
        for run in served["runs"]:
            assert run["status"] == "SUCCESS", run
            assert run["pipelineSnapshotId"] == served["pipelineSnapshotId"], (job, run)

    with _browser_page() as page:
        page.goto(f"{base_url}/locations/biocap/jobs/prepare_text/runs")
        _skip_community_dialog(page)
        (run,) = graphql(base_url, JOB_RUNS, {"job": "prepare_text"})["pipelineOrError"]["runs"]
        sync_api.expect(page.get_by_text(run["runId"][:8], exact=True).first).to_be_visible()
        sync_api.expect(page.get_by_text("No runs found")).to_have_count(0)
        page.screenshot(path=screenshots / "job-runs.png")

    # the automation sensor ticks (every 30 s) and requests nothing: the demo's own run
    # evaluated its checkpoint
    ticks = wait_for(
        "an evaluate_new_checkpoints tick",
        lambda: graphql(base_url, SENSOR_TICKS)["sensorOrError"]["sensorState"]["ticks"],
        timeout=180.0,
        every=2.0,
    )
    assert all(not tick["runIds"] for tick in ticks), ticks
    now = {r["runId"] for r in graphql(base_url, ALL_RUNS)["runsOrError"]["results"]}
    assert now == demo_runs, "a run nobody asked for"


def test_training_and_evaluation_show_plots_checks_and_automation(demo_ui, screenshots) -> None:
    base_url, _, home = demo_ui
    expect = sync_api.expect
    with _browser_page() as page:
        page.goto(f"{base_url}/assets/clip_checkpoint?view=events")
        _skip_community_dialog(page)
        for key in ("checkpoint", "model", "samples_per_second", "val_caption_loss"):
            expect(page.get_by_text(key, exact=True).first).to_be_visible()
        assert _shown_image_width(page, "training_curve") > 100
        page.screenshot(path=screenshots / "clip-checkpoint.png")
        page.keyboard.press("Escape")

        page.goto(f"{base_url}/assets/eval_reports?view=events")
        expect(page.get_by_text("report_html", exact=True).first).to_be_visible()
        assert _shown_image_width(page, "headline_plot") > 100
        page.screenshot(path=screenshots / "eval-reports.png")
        page.keyboard.press("Escape")

        page.goto(f"{base_url}/assets/clip_checkpoint?view=checks")
        expect(page.get_by_text("losses_are_finite").first).to_be_visible()
        expect(page.get_by_text("Passed").first).to_be_visible()

        page.goto(f"{base_url}/automation")
        for name in ("reevaluate_weekly", "evaluate_new_checkpoints"):
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        page.screenshot(path=screenshots / "automation.png")

        # the HTML report beside the checkpoint, as a user opens it: the paper's two tables
        # with the published rows and ours, under the provenance
        (report,) = (home / "storage" / "checkpoints").glob("*/report-epoch_8.html")
        page.goto(report.as_uri())
        for heading in ("Zero-shot classification, top-1", "Text-image retrieval", "Coverage"):
            expect(page.get_by_role("heading", name=heading)).to_be_visible()
        for text in ("BioCAP", "this platform", "synthetic"):
            expect(page.get_by_text(text).first).to_be_visible()
        page.screenshot(path=screenshots / "eval-report.png", full_page=True)

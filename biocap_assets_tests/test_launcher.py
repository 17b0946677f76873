"""The launcher runs a real worker through Dagster Pipes and gets its results back."""

import json
import subprocess
import sys
from dataclasses import asdict

import dagster as dg
import pytest

from biocap_assets.demo.world import DemoSizes
from biocap_assets.resources import LauncherResource
from biocap_assets.resources.launcher import worker_command

TINY = asdict(
    DemoSizes(
        train_per_species=1,
        val_per_species=1,
        train_shards=1,
        zero_shot_per_species=1,
        retrieval_per_species=1,
        inquire_pool=110,
    )
)


def _probe_asset(out: str, seed: int):
    @dg.asset
    def world_probe(context: dg.AssetExecutionContext, launcher: LauncherResource):
        invocation = launcher.run(
            context, "demo_world", extras={"out": out, "seed": seed, "sizes": TINY}
        )
        (result,) = invocation.get_custom_messages()
        return dg.MaterializeResult(
            metadata={"catalog_rows": result["catalog_rows"], "root": result["root"]}
        )

    return world_probe


def test_worker_runs_through_pipes_and_reports_back(tmp_path, instance):
    out = tmp_path / "world"
    result = dg.materialize(
        [_probe_asset(str(out), 11)], instance=instance, resources={"launcher": LauncherResource()}
    )
    assert result.success
    (mat,) = result.asset_materializations_for_node("world_probe")
    assert mat.metadata["catalog_rows"].value == 32 * 2 + 4 * 3  # + 3 rows per INCOMPLETE_ROWS
    assert mat.metadata["root"].value == str(out)
    assert (out / "MANIFEST.json").is_file()
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("demo world ready" in m for m in logs), "worker logs reach the run"


def test_a_failing_worker_fails_the_step_with_its_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(dg.Failure) as info:
        dg.materialize(
            [_probe_asset(str(blocker / "world"), 1)], resources={"launcher": LauncherResource()}
        )
    assert "worker demo_world failed: FileExistsError" in str(info.value)
    assert str(blocker) in str(info.value), "the error names the path"
    assert "failed with code 1" in str(info.value.__cause__), "the client's error is the cause"


def test_worker_runs_by_hand_and_prints_json(tmp_path):
    out = tmp_path / "world"
    command = worker_command("demo_world", sys.executable, ["--out", str(out), "--seed", "2"])
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(done.stdout)
    assert report["root"] == str(out) and report["seed"] == 2


def test_worker_names_must_be_modules():
    with pytest.raises(ValueError, match="must be a module name"):
        worker_command("../evil", "python")

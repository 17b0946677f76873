"""The code location loads, and resources follow the environment variables."""

import importlib
from pathlib import Path

import dagster as dg
import pytest

from biocap_assets.settings import ENV_VARS, Settings

# The contract's asset keys (DESIGN.md); each stage adds its key as it lands.
IMPLEMENTED_ASSETS = {
    "eval_reports",
    "eval_images",
    "taxa_table",
    "wiki_pages",
    "visual_descriptions",
    "captioned_shards",
    "clip_checkpoint",
    "model_weights",
}


def test_definitions_load_with_every_asset(fresh_defs):
    dg.Definitions.validate_loadable(fresh_defs)
    keys = {k.to_user_string() for k in fresh_defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == IMPLEMENTED_ASSETS
    for spec in fresh_defs.resolve_all_asset_specs():
        assert spec.description and spec.owners and spec.kinds and spec.group_name


def test_defaults_live_under_biocap_home(tmp_path):
    settings = Settings.from_env({"BIOCAP_HOME": str(tmp_path)})
    assert settings.storage_url == (tmp_path / "storage").as_uri()
    assert settings.duckdb_path == tmp_path / "biocap.duckdb"
    assert settings.demo_root == tmp_path / "demo"
    assert settings.catalog_url is None and settings.shards_url is None
    assert settings.wiki_api_url is None  # resolved per source: demo wiki or Wikipedia


def test_the_readme_configuration_table_is_made_from_the_settings():
    """One place per variable: its meaning and default live in settings.VARIABLES; the
    README's table is exactly what `biocap config --markdown` prints from them."""
    from biocap_assets.settings import readme_table
    from biocap_assets_tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    start = readme.index("| variable | meaning | default |")
    table = readme[start : readme.index("\n\n", start)]
    assert table == readme_table(), "run `biocap config --markdown` and paste it in README.md"
    for name in ENV_VARS:
        assert f"| `{name}` |" in table, f"README does not document {name}"


def test_env_vars_reach_the_resources(biocap_home, monkeypatch, tmp_path):
    monkeypatch.setenv("BIOCAP_STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("BIOCAP_DUCKDB_PATH", str(tmp_path / "other.duckdb"))
    monkeypatch.setenv("BIOCAP_CATALOG_URL", "s3://bucket/catalog.csv")
    import biocap_assets.definitions as definitions

    defs = importlib.reload(definitions).defs
    storage = defs.resources["storage"]
    assert isinstance(storage.root_url, dg.EnvVar)
    assert storage.root_url.get_value() == "s3://bucket/prefix"
    assert defs.resources["duckdb"].database == str(tmp_path / "other.duckdb")
    assert defs.resources["sources"].catalog_url.get_value() == "s3://bucket/catalog.csv"


def test_a_value_that_cannot_be_used_is_named():
    from biocap_assets.settings import ConfigurationError, Settings

    with pytest.raises(ConfigurationError, match="BIOCAP_K8S_PENDING_TIMEOUT='15m'"):
        Settings.from_env({"BIOCAP_K8S_PENDING_TIMEOUT": "15m"})
    with pytest.raises(ConfigurationError, match="BIOCAP_LAUNCHER='kubernetes': use one of"):
        Settings.from_env({"BIOCAP_LAUNCHER": "kubernetes"})
    with pytest.raises(ConfigurationError, match="BIOCAP_K8S_KEEP_FAILED_PODS"):
        Settings.from_env({"BIOCAP_K8S_KEEP_FAILED_PODS": "maybe"})
    settings = Settings.from_env({"BIOCAP_LAUNCHER": "k8s", "BIOCAP_K8S_PENDING_TIMEOUT": "60"})
    assert (settings.launcher, settings.k8s_pending_timeout) == ("k8s", 60.0)
    assert settings.set_variables == {"BIOCAP_LAUNCHER", "BIOCAP_K8S_PENDING_TIMEOUT"}
    # the shared volumes: a claim name, or none
    assert (settings.k8s_model_cache, settings.k8s_eval_volume) == ("biocap-models", "biocap-eval")
    with pytest.raises(ConfigurationError, match="BIOCAP_K8S_MODEL_CACHE='Models/HF'"):
        Settings.from_env({"BIOCAP_K8S_MODEL_CACHE": "Models/HF"})
    off = Settings.from_env({"BIOCAP_K8S_MODEL_CACHE": "none", "BIOCAP_LAUNCHER": "k8s"})
    assert off.k8s_model_cache == "" and off.effective()["BIOCAP_K8S_MODEL_CACHE"] == "none"
    from biocap_assets.definitions import build_resources

    launcher = build_resources(off)["launcher"]
    assert launcher.model_cache == "" and launcher.eval_volume == "biocap-eval"


def test_biocap_config_prints_no_password(monkeypatch, capsys):
    from biocap_assets.cli import main

    monkeypatch.setenv("BIOCAP_DUCKLAKE_CATALOG", "postgres:host=db user=u password=hunter2")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "password=***" in out
    monkeypatch.setenv("BIOCAP_K8S_PENDING_TIMEOUT", "15m")
    assert main(["config"]) == 2
    assert "BIOCAP_K8S_PENDING_TIMEOUT='15m'" in capsys.readouterr().err


# read where the library or protocol defining them is used (see settings.py)
THIRD_PARTY_VARIABLES = {
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_DATASETS_CACHE",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
}


def _environment_reads(tree) -> list[tuple[int, str]]:
    """(line, name) of every os.environ[...] / os.environ.get(...) / os.getenv(...) read
    of a literal name in a module's syntax tree."""
    import ast

    def is_environ(node) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    reads = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and is_environ(node.value):
            if isinstance(node.ctx, ast.Load):
                key = node.slice
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and (
                (func.attr == "get" and is_environ(func.value)) or func.attr == "getenv"
            ):
                key = node.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            reads.append((node.lineno, key.value))
    return reads


def test_no_variable_is_read_outside_the_configuration_module():
    import ast

    from biocap_assets_tests.conftest import REPO

    stray, third_party = [], set()
    for path in sorted((REPO / "biocap_assets").rglob("*.py")):
        if path.name == "settings.py" and path.parent.name == "biocap_assets":
            continue
        for line, name in _environment_reads(ast.parse(path.read_text(), str(path))):
            if name in THIRD_PARTY_VARIABLES:
                third_party.add(name)
            else:
                stray.append(f"{path.relative_to(REPO)}:{line} reads {name}")
    assert not stray, "read these through biocap_assets.settings:\n" + "\n".join(stray)
    assert third_party == THIRD_PARTY_VARIABLES  # the list in settings.py stays exact


def test_the_environment_scan_finds_a_planted_read():
    import ast

    planted = ast.parse(
        "import os\nx = os.environ.get('BIOCAP_X')\ny = os.environ['HF_HOME']\n"
        "z = os.getenv('RANK', '0')\nos.environ['DAGSTER_HOME'] = 'set, not read'\n"
    )
    assert sorted(_environment_reads(planted)) == [(2, "BIOCAP_X"), (3, "HF_HOME"), (4, "RANK")]


def test_loading_the_definitions_imports_no_torch():
    """Every run (and step) process loads the Definitions: torch would add about 1.5 s and
    700 MB to each of them, 160 times over in a shard backfill (bench/imports.py)."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            "import sys, biocap_assets.definitions; "
            "print(sorted(m for m in ('torch', 'open_clip', 'webdataset') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_biocap_config_lists_every_variable_with_its_value_in_effect(monkeypatch, capsys):
    from biocap_assets.cli import main
    from biocap_assets.settings import VARIABLES

    monkeypatch.setenv("BIOCAP_WORKER_IMAGE", "registry/worker:1")
    monkeypatch.setenv("BIOCAP_CATALOG_URL", "https://user:pw123@data.example/catalog.csv")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for variable in VARIABLES:
        assert f"\n{variable.name}  " in out, variable.name
    assert "DAGSTER_HOME  (default) " in out and "/dagster" in out
    assert "BIOCAP_WORKER_IMAGE  = registry/worker:1" in out
    assert "pw123" not in out, "redacted"
    assert "Settings(" not in out
    # what does not go together is said
    assert "warning: BIOCAP_WORKER_IMAGE is set but not used: the launcher is local" in out
    assert "warning: BIOCAP_CATALOG_URL is set but BIOCAP_SHARDS_URL is not" in out


def test_biocap_config_shows_the_libraries_variables_and_unset_production_sources(
    monkeypatch, capsys
):
    from biocap_assets.cli import main

    monkeypatch.setenv("BIOCAP_LAUNCHER", "k8s")
    monkeypatch.setenv("BIOCAP_STORAGE_URL", "s3://bucket/biocap")
    monkeypatch.setenv("BIOCAP_WORKER_IMAGE", "registry/worker:1")
    monkeypatch.setenv("BIOCAP_SHARDS_URL", "s3://bucket/shards/shard-{000000..000159}.tar")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("KUBECONFIG", "/home/op/.kube/config")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "AWS_SECRET_ACCESS_KEY  (set, hidden)" in out and "s3cr3t-value" not in out
    assert "KUBECONFIG  /home/op/.kube/config" in out and "PGPASSWORD  (unset)" in out
    # runs would fail on the unset sources: said before any run, naming each
    assert "warning: BIOCAP_CATALOG_URL is unset in a production configuration" in out
    assert "warning: BIOCAP_EVAL_DATA is unset in a production configuration" in out
    assert "BIOCAP_SHARDS_URL is unset" not in out
    assert "No inconsistent settings" not in out
    monkeypatch.setenv("BIOCAP_DEMO", "1")
    assert main(["config"]) == 0
    assert "is unset in a production configuration" not in capsys.readouterr().out


def test_outside_a_laptop_the_demo_never_stands_in_silently(biocap_home, monkeypatch):
    """A production configuration (here: the k8s launcher) with an unset source fails,
    naming the variable; BIOCAP_DEMO=1 asks for the demo on purpose."""
    import importlib

    import biocap_assets.definitions as definitions

    monkeypatch.setenv("BIOCAP_LAUNCHER", "k8s")
    monkeypatch.setenv("BIOCAP_WORKER_IMAGE", "registry.example.org/biocap/gpu-worker:1")

    def materialize_taxa():
        job = importlib.reload(definitions).defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(
            asset_selection=[dg.AssetKey("taxa_table")], raise_on_error=False
        )

    result = materialize_taxa()
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "BIOCAP_CATALOG_URL is not set" in message and "BIOCAP_LAUNCHER=k8s" in message
    assert "BIOCAP_DEMO=1" in message

    monkeypatch.setenv("BIOCAP_DEMO", "1")  # the demo world is complete: no pod is needed
    assert materialize_taxa().success


def test_the_shipped_instance_runs_one_gpu_step_at_a_time(tmp_path, monkeypatch):
    """The instance `biocap demo` and `make dev` use (biocap_assets/dagster.yaml), as Dagster
    reads it: two runs at once, every pool (the GPU steps' `gpu`) limited to one slot."""
    import shutil

    import biocap_assets
    from biocap_assets.definitions import defs

    shutil.copy(Path(biocap_assets.__file__).parent / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        config = instance.get_concurrency_config()
    assert config.pool_config.default_pool_limit == 1
    assert config.run_queue_config.max_concurrent_runs == 2
    pools = {key.to_user_string(): a.op.pool for a in defs.assets for key in a.keys}
    gpu = {"visual_descriptions", "captioned_shards", "clip_checkpoint", "eval_reports"}
    assert {name for name, pool in pools.items() if pool == "gpu"} == gpu

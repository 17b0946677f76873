"""Shared fixtures: a temporary BIOCAP_HOME, the demo world, the reference data."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from biocap_assets.demo.world import DemoWorld, generate_demo_world
from biocap_assets.settings import ENV_VARS

REPO = Path(__file__).resolve().parent.parent
REFERENCE_DATA = REPO.parent / "shared" / "reference-data"
# Every variable the platform reads (settings.ENV_VARS is the one list, Dagster's home in it)
BIOCAP_ENV = tuple(ENV_VARS)


@pytest.fixture(autouse=True)
def _clean_biocap_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """No test sees the developer's own BIOCAP_* settings, cloud credentials, kube config,
    torchrun ranks or Hugging Face cache."""
    from biocap_assets.common.contract import ERROR_FILE_ENV
    from biocap_assets.settings import THIRD_PARTY

    for name in BIOCAP_ENV:
        monkeypatch.delenv(name, raising=False)
    others = ("HF_DATASETS_CACHE", "HF_ENDPOINT", "RANK", "LOCAL_RANK", "WORLD_SIZE")
    for name in (*THIRD_PARTY, *others, ERROR_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf_home"))


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> DemoWorld:
    """One demo world for the session (tests must not modify it)."""
    return generate_demo_world(tmp_path_factory.mktemp("world") / "demo")


@pytest.fixture
def biocap_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_world: DemoWorld) -> Path:
    """A fresh BIOCAP_HOME whose demo world is a copy-free link to the session world."""
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(demo_world.root, home / "demo")
    monkeypatch.setenv("BIOCAP_HOME", str(home))
    return home


@pytest.fixture
def fresh_defs(biocap_home: Path):
    """Definitions re-read from the environment of this test."""
    import biocap_assets.definitions as definitions

    return importlib.reload(definitions).defs


@pytest.fixture(scope="session")
def reference_data() -> Path:
    if not REFERENCE_DATA.is_dir():
        pytest.skip("../shared/reference-data is absent")
    return REFERENCE_DATA


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server (Debian's package) for DuckLake catalogs; skips without it."""
    from biocap_assets_tests.postgres_server import postgres_server

    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def captioned(demo_world, tmp_path_factory) -> list[str]:
    """The demo training shards, then the validation shard, captioned with the CPU template
    captioner (no Dagster needed)."""
    from biocap_assets.demo.species import SPECIES
    from biocap_assets.demo.wiki import visual_paragraphs
    from biocap_assets.inference.tasks import TemplateCaptionerAdapter
    from biocap_assets.shards.rewrite import rewrite_shard

    folder = tmp_path_factory.mktemp("captioned")
    texts = {s.taxon.binomial: " ".join(visual_paragraphs(s)) for s in SPECIES}
    paths = []
    for shard in demo_world.train_shards:
        out = folder / shard.name
        with shard.open("rb") as src, out.open("wb") as dst:
            rewrite_shard(
                src,
                dst,
                TemplateCaptionerAdapter(),
                describe=lambda r: texts.get(f"{r.get('genus', '')} {r.get('species', '')}"),
            )
        paths.append(str(out))
    return paths


def run_train(urls, out, config, nproc=0, rank_report="", timeout=600) -> dict:
    """The train worker as a subprocess (torchrun with ``nproc`` ranks); its result."""
    import json
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "biocap_assets.workers.train",
        "--train",
        *urls[:-1],
        "--val",
        urls[-1],
        "--out",
        str(out),
        "--train-samples",
        "580",
        "--config",
        json.dumps(config),
    ]
    if nproc:
        command[1:2] = [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
        ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if rank_report:
        command += ["--rank-report", rank_report]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout[done.stdout.index("{") :])


@pytest.fixture(scope="session")
def demo_run(captioned, tmp_path_factory) -> Path:
    """A demo checkpoint run folder (a few epochs of the demo preset): epoch_N.pt and export/."""
    out = tmp_path_factory.mktemp("demo_run") / "run"
    run_train(captioned, out, {"epochs": 4})
    return out


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig naming a server nothing listens on (dagster_k8s wants one to build)."""
    from biocap_assets_tests.k8s_api_server import kubeconfig as kubeconfig_text

    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig_text("https://127.0.0.1:6443"))
    return path


@pytest.fixture
def instance():
    """An ephemeral Dagster instance, disposed of after the test (an undisposed one's
    in-memory SQLite connections are finalised at interpreter exit, noisily)."""
    import dagster as dg

    with dg.DagsterInstance.ephemeral() as instance:
        yield instance

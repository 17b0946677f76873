"""Shared fixtures: a temporary BIOCAP_HOME, the demo world, the reference data."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from biocap_assets.demo.world import DemoWorld, generate_demo_world

REPO = Path(__file__).resolve().parent.parent
REFERENCE_DATA = REPO.parent / "shared" / "reference-data"
BIOCAP_ENV = (
    "BIOCAP_HOME",
    "BIOCAP_STORAGE_URL",
    "BIOCAP_DUCKDB_PATH",
    "BIOCAP_CATALOG_URL",
    "BIOCAP_SHARDS_URL",
    "BIOCAP_WIKI_API_URL",
    "BIOCAP_DUCKLAKE_CATALOG",
    "BIOCAP_DUCKLAKE_DATA_PATH",
    "BIOCAP_LAUNCHER",
    "DAGSTER_HOME",
)


@pytest.fixture(autouse=True)
def _clean_biocap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own BIOCAP_* settings."""
    for name in BIOCAP_ENV:
        monkeypatch.delenv(name, raising=False)


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

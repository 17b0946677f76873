"""Dagster resources: storage root, DuckDB, IO managers, worker launcher, data sources."""

from biocap_assets.resources.duckdb import BiocapDuckDB
from biocap_assets.resources.io_managers import ArtifactIOManager, DuckDBTableIOManager
from biocap_assets.resources.launcher import LauncherResource
from biocap_assets.resources.sources import SourcesResource
from biocap_assets.resources.storage import StorageResource

__all__ = [
    "ArtifactIOManager",
    "BiocapDuckDB",
    "DuckDBTableIOManager",
    "LauncherResource",
    "SourcesResource",
    "StorageResource",
]

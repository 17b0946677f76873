"""The one Definitions object of biocap: assets, checks, jobs and resources.

Resources are chosen from the environment (see settings.py and the README's
Configuration section); a variable that is set is passed as ``dg.EnvVar`` so the
UI shows where a value came from.
"""

from __future__ import annotations

import os

import dagster as dg

from biocap_assets.assets import captions, descriptions, evaluation, taxa, training, wiki
from biocap_assets.jobs import ALL_JOBS, evaluate_new_checkpoints, reevaluate, reevaluate_schedule
from biocap_assets.resources import (
    ArtifactIOManager,
    BiocapDuckDB,
    DuckDBTableIOManager,
    LauncherResource,
    SourcesResource,
    StorageResource,
)
from biocap_assets.settings import Settings


def _env_or(name: str, default: str | None) -> str | dg.EnvVar | None:
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else default


def build_resources(settings: Settings) -> dict[str, object]:
    storage = StorageResource(root_url=_env_or("BIOCAP_STORAGE_URL", settings.storage_url))
    duckdb = BiocapDuckDB(
        database=str(settings.duckdb_path),
        ducklake_catalog=_env_or("BIOCAP_DUCKLAKE_CATALOG", ""),
        ducklake_data_path=_env_or("BIOCAP_DUCKLAKE_DATA_PATH", settings.ducklake_data_path),
    )
    return {
        "storage": storage,
        "duckdb": duckdb,
        "table_io_manager": DuckDBTableIOManager(duckdb=duckdb, storage=storage),
        "io_manager": ArtifactIOManager(storage=storage),
        "launcher": LauncherResource(
            mode=os.environ.get("BIOCAP_LAUNCHER", "local").strip() or "local",
            image=_env_or("BIOCAP_WORKER_IMAGE", ""),
            namespace=_env_or("BIOCAP_K8S_NAMESPACE", "biocap"),
            pending_timeout=float(os.environ.get("BIOCAP_K8S_PENDING_TIMEOUT", "") or 900),
            keep_failed_pods=os.environ.get("BIOCAP_K8S_KEEP_FAILED_PODS", "").strip()
            in ("1", "true", "yes"),
        ),
        "sources": SourcesResource(
            demo_root=str(settings.demo_root),
            catalog_url=_env_or("BIOCAP_CATALOG_URL", None),
            shards_url=_env_or("BIOCAP_SHARDS_URL", None),
            wiki_api_url=_env_or("BIOCAP_WIKI_API_URL", None),
            wiki_contact=_env_or("BIOCAP_WIKI_CONTACT", ""),
            eval_data=_env_or("BIOCAP_EVAL_DATA", ""),
            eval_images=_env_or("BIOCAP_EVAL_IMAGES", ""),
            inquire_rerank=_env_or("BIOCAP_INQUIRE_RERANK", ""),
        ),
    }


SETTINGS = Settings.from_env()
ALL_ASSETS = [
    taxa.taxa_table,
    wiki.wiki_pages,
    descriptions.visual_descriptions,
    captions.build_captioned_shards(SETTINGS),
    training.clip_checkpoint,
    evaluation.eval_images,
    evaluation.eval_reports,
]
ALL_CHECKS = [taxa.no_duplicate_taxa, wiki.every_taxon_has_a_row, wiki.error_share_below_threshold]

defs = dg.Definitions(
    # code references: the UI links each asset to the file and line that defines it
    assets=dg.with_source_code_references(ALL_ASSETS),
    asset_checks=ALL_CHECKS,
    jobs=[*ALL_JOBS, reevaluate],
    schedules=[reevaluate_schedule(os.environ.get("BIOCAP_EVAL_CRON", "").strip() or "0 6 * * 1")],
    sensors=[evaluate_new_checkpoints],
    resources=build_resources(SETTINGS),
)

"""The one Definitions object of biocap: assets, checks, jobs and resources.

Resources are chosen from the configuration (``settings.Settings``, the one place the
environment is read; see the README's Configuration section); a variable that is set is
passed as ``dg.EnvVar`` so the UI shows where a value came from.
"""

from __future__ import annotations

import dagster as dg

from biocap_assets.assets import captions, descriptions, evaluation, models, taxa, training, wiki
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

EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}


def build_resources(settings: Settings) -> dict[str, object]:
    def env_or(name: str, value: str | None) -> str | dg.EnvVar | None:
        """A variable that is set goes in as ``dg.EnvVar``: the UI shows its origin."""
        return dg.EnvVar(name) if name in settings.set_variables else value

    storage = StorageResource(root_url=env_or("BIOCAP_STORAGE_URL", settings.storage_url))
    duckdb = BiocapDuckDB(
        database=str(settings.duckdb_path),
        ducklake_catalog=env_or("BIOCAP_DUCKLAKE_CATALOG", settings.ducklake_catalog),
        ducklake_data_path=env_or("BIOCAP_DUCKLAKE_DATA_PATH", settings.ducklake_data_path),
    )
    return {
        "storage": storage,
        "duckdb": duckdb,
        "table_io_manager": DuckDBTableIOManager(duckdb=duckdb, storage=storage),
        "io_manager": ArtifactIOManager(storage=storage),
        "launcher": LauncherResource(
            mode=settings.launcher,
            image=env_or("BIOCAP_WORKER_IMAGE", settings.worker_image),
            namespace=env_or("BIOCAP_K8S_NAMESPACE", settings.k8s_namespace),
            pending_timeout=settings.k8s_pending_timeout,
            keep_failed_pods=settings.k8s_keep_failed_pods,
            model_cache=settings.k8s_model_cache,
            eval_volume=settings.k8s_eval_volume,
        ),
        "sources": SourcesResource(
            demo_root=str(settings.demo_root),
            catalog_url=env_or("BIOCAP_CATALOG_URL", settings.catalog_url),
            shards_url=env_or("BIOCAP_SHARDS_URL", settings.shards_url),
            val_shards_url=env_or("BIOCAP_VAL_SHARDS_URL", settings.val_shards_url),
            wiki_api_url=env_or("BIOCAP_WIKI_API_URL", settings.wiki_api_url),
            wiki_contact=env_or("BIOCAP_WIKI_CONTACT", settings.wiki_contact),
            eval_data=env_or("BIOCAP_EVAL_DATA", settings.eval_data),
            eval_images=env_or("BIOCAP_EVAL_IMAGES", settings.eval_images),
            inquire_rerank=env_or("BIOCAP_INQUIRE_RERANK", settings.inquire_rerank),
            no_demo_because="" if settings.demo else settings.production_shaped,
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
    models.model_weights,
]
ALL_CHECKS = [taxa.no_duplicate_taxa, wiki.every_taxon_has_a_row, wiki.error_share_below_threshold]

defs = dg.Definitions(
    # code references: the UI links each asset to the file and line that defines it
    assets=dg.with_source_code_references(ALL_ASSETS),
    asset_checks=ALL_CHECKS,
    jobs=[*ALL_JOBS, reevaluate],
    schedules=[reevaluate_schedule(SETTINGS.eval_cron)],
    sensors=[evaluate_new_checkpoints],
    resources=build_resources(SETTINGS),
    # in_process by default: a shard partition is one step that launches a worker, so a
    # step process of its own would cost 2 s of start-up per partition for nothing
    # (BENCHMARKS.md, "A 160-shard backfill"); multiprocess runs one run's steps side by side
    executor=EXECUTORS[SETTINGS.executor],
)

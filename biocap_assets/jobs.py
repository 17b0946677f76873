"""Jobs users launch from the UI, and the order `biocap demo` runs them in."""

from __future__ import annotations

import sys
from collections.abc import Callable

import dagster as dg

TEXT_ASSETS = ["taxa_table", "wiki_pages", "visual_descriptions"]

prepare_text = dg.define_asset_job(
    "prepare_text",
    selection=dg.AssetSelection.assets(*TEXT_ASSETS),
    description="Taxa, Wikipedia pages and visual descriptions (unpartitioned), upstream first.",
)
caption_backfill = dg.define_asset_job(
    "caption_backfill",
    selection=dg.AssetSelection.assets("captioned_shards"),
    description="Caption shards: launch as a backfill, one partition (one tar) per run.",
)

train_and_evaluate = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.assets("clip_checkpoint", "eval_images").downstream(),
    description="Train a checkpoint on the captioned shards, then evaluate it.",
)

ALL_JOBS = [prepare_text, caption_backfill, train_and_evaluate]  # in dependency order


# The code location `make dev` serves (workspace.yaml's location_name, pyproject.toml's
# [tool.dagster] code_location_name).
LOCATION = "biocap"
DEFINITIONS_MODULE = "biocap_assets.definitions"


def run_everything(
    instance: dg.DagsterInstance,
    raise_on_error: bool = False,
    console_level: str = "DEBUG",
    on_event: Callable[[dg.EventLogEntry], None] | None = None,
) -> list[dg.ExecutionResult]:
    """Every job in dependency order, each partition of a partitioned job in its own run,
    executed in this process; stops at the first failed run.

    Each run is recorded as a launch from the ``biocap`` code location would record it: with
    that location's origin and the job's own snapshot (not the in-process variant that
    ``execute_in_process`` makes). So `make dev` lists the demo's runs on the job pages and
    the timeline, and re-executes them without a version warning. The definitions are those
    of the imported ``biocap_assets.definitions`` module.

    ``console_level``: what Dagster's console logger prints (every event still reaches the
    instance's event log); ``on_event``: called with each event of each run, as it happens
    with the in-process executor, after the run with the multiprocess one.
    """
    # Dagster has no public call for "execute here a run as launched from this code
    # location"; these are the pieces its own `dagster job launch` and test harness use.
    from dagster._core.execution.api import execute_run
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.remote_representation.code_location import InProcessCodeLocation
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._utils.hosted_user_process import recon_job_from_origin

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE),
        location_name=LOCATION,
    )
    results = []
    with InProcessCodeLocation(origin, instance=instance) as location:
        (repository,) = location.get_repositories().values()
        for job in ALL_JOBS:
            remote_job = repository.get_full_job(job.name)
            recon_job = recon_job_from_origin(remote_job.get_python_origin())
            job_def = recon_job.get_definition()
            partitions = job_def.partitions_def
            keys = (
                partitions.get_partition_keys(dynamic_partitions_store=instance)
                if partitions
                else [None]
            )
            for key in keys:
                run = instance.create_run_for_job(
                    job_def=job_def,
                    run_config={"loggers": {"console": {"config": {"log_level": console_level}}}},
                    tags=(
                        {**job_def.tags, **job_def.get_tags_for_partition_key(key, None)}
                        if key
                        else job_def.tags
                    ),
                    remote_job_origin=remote_job.get_remote_origin(),
                    job_code_origin=remote_job.get_python_origin(),
                )
                # steps in their own processes log to the storage, not to this instance
                live = job_def.executor_def.name == "in_process"
                if on_event and live:
                    instance.add_event_listener(run.run_id, on_event)
                result = execute_run(recon_job, run, instance, raise_on_error=raise_on_error)
                if on_event and not live:
                    for entry in instance.all_logs(run.run_id):
                        on_event(entry)
                results.append(result)
                if not result.success:
                    return results
    return results


reevaluate = dg.define_asset_job(
    "reevaluate",
    selection=dg.AssetSelection.assets("eval_reports"),
    description="Evaluate the latest checkpoint again (the same or new datasets).",
)


def reevaluate_schedule(cron: str) -> dg.ScheduleDefinition:
    """Re-evaluates the latest checkpoint on ``cron``, even when it did not change."""

    @dg.schedule(
        job=reevaluate,
        cron_schedule=cron,
        name="reevaluate_weekly",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Re-run eval_reports on the latest checkpoint.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        tick = context.scheduled_execution_time.isoformat()
        return dg.RunRequest(run_key=f"reevaluate-{tick}", tags={"biocap/trigger": "schedule"})

    return _schedule


# eval_reports carries AutomationCondition.eager(): it is requested whenever a parent (a new
# clip_checkpoint) was updated since eval_reports last ran, never twice for one checkpoint,
# and not when the same run already evaluated it (train_and_evaluate, biocap demo). This
# sensor is what evaluates those conditions, on the daemon; it is on by default.
evaluate_new_checkpoints = dg.AutomationConditionSensorDefinition(
    "evaluate_new_checkpoints",
    target=dg.AssetSelection.assets("eval_reports"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluate every new clip_checkpoint (eval_reports' eager automation condition).",
)

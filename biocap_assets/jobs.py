"""Jobs users launch from the UI, and the order `biocap demo` runs them in."""

from __future__ import annotations

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


def run_everything(
    defs: dg.Definitions, instance: dg.DagsterInstance, raise_on_error: bool = False
) -> list[dg.ExecuteInProcessResult]:
    """Every job in dependency order, each partition of a partitioned job in its own run;
    stops at the first failed run."""
    results = []
    for job in ALL_JOBS:
        job_def = defs.resolve_job_def(job.name)
        partitions = job_def.partitions_def
        keys = (
            partitions.get_partition_keys(dynamic_partitions_store=instance)
            if partitions
            else [None]
        )
        for key in keys:
            result = job_def.execute_in_process(
                instance=instance, partition_key=key, raise_on_error=raise_on_error
            )
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

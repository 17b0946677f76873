"""Worker: caption one shard (``python -m biocap_assets.workers.caption``).

One run = one input tar = one partition. The output shard is written atomically:
a killed run leaves no complete-looking tar. Captions come from a VLM backend
(vllm, openai), the CPU template captioner, or the released TreeOfLife-10M-Captions.
"""

from __future__ import annotations

import argparse
import json

import duckdb
import pyarrow as pa

from biocap_assets.common.files import (
    HashingWriter,
    atomic_open,
    open_read,
    read_parquet,
    register_filesystem,
    remove_stale_temps,
    shard_size,
)
from biocap_assets.inference.base import CAPTION_ENGINE, INTERNVL_STOP
from biocap_assets.inference.factory import InferenceConfig, make_backend
from biocap_assets.inference.prompts import (
    REFERENCE_EXCERPT_CHARS,
    REFERENCE_PROMPT,
    FormatExamples,
)
from biocap_assets.inference.tasks import (
    Captioner,
    GenerativeCaptioner,
    NoopCaptioner,
    ReleasedCaptioner,
    TemplateCaptionerAdapter,
)
from biocap_assets.progress import ProgressLog
from biocap_assets.shards.images import default_workers
from biocap_assets.shards.rewrite import ShardStats, description_lookup, rewrite_shard, shard_keys
from biocap_assets.workers.runtime import run_main, worker_context

SOURCES = ("cpu", "vllm", "openai", "released", "noop")


def released_captions(parquet_url: str, keys: list[str]) -> dict[str, str]:
    """Captions of ``keys`` from ``uuid_caption_description.parquet`` (uuid, caption, ...)."""
    with duckdb.connect() as connection:
        register_filesystem(connection, parquet_url)
        connection.register("wanted", pa.table({"uuid": keys}))
        rows = connection.execute(
            "SELECT r.uuid, r.caption FROM read_parquet(?) r JOIN wanted USING (uuid) "
            "WHERE r.caption IS NOT NULL AND trim(r.caption) <> ''",
            [parquet_url],
        ).fetchall()
    return dict(rows)


def make_captioner(extras: dict, log) -> Captioner:
    source = extras.get("source", "cpu")
    if source not in SOURCES:
        raise ValueError(f"caption source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "cpu":
        return TemplateCaptionerAdapter()
    if source == "noop":
        return NoopCaptioner()
    if source == "released":
        if not extras.get("released_url"):
            raise ValueError(
                "the released caption source needs released_url (uuid_caption_description.parquet)"
            )
        with open_read(extras["input"]) as f:
            keys = shard_keys(f)
        captions = released_captions(extras["released_url"], keys)
        log.info(f"released captions: {len(captions)} of {len(keys)} keys found")
        return ReleasedCaptioner(captions)
    prompt = extras.get("prompt") or REFERENCE_PROMPT
    settings = dict(extras.get("inference") or {})
    if prompt == REFERENCE_PROMPT:
        # caption_gen/main.py's engine and sampling defaults, under what was given
        settings = {**CAPTION_ENGINE, **settings}
        settings["stop"] = settings.get("stop") or list(INTERNVL_STOP)
    config = InferenceConfig.from_dict({**settings, "backend": source})
    if extras.get("format_examples"):
        examples = FormatExamples.from_file(extras["format_examples"])
        log.info(f"format examples: {len(examples.by_class)} classes from {examples.source}")
    else:
        log.warning("no format examples: every sample gets the fallback examples")
        examples = FormatExamples({})
    max_wiki_chars = int(extras.get("max_wiki_chars", REFERENCE_EXCERPT_CHARS))
    captioner = GenerativeCaptioner(
        make_backend(config),
        examples,
        seed=config.seed,
        prompt=prompt,
        max_wiki_chars=max_wiki_chars,
    )
    captioner.parameters = generation_parameters(config, max_wiki_chars)
    return captioner


def generation_parameters(config: InferenceConfig, max_wiki_chars: int) -> dict:
    """What, besides the prompt, decides a generated caption (recorded per shard): the
    settings in effect, defaults included."""
    return {
        "model": config.model,
        "quantization": config.quantization,
        "max_model_len": config.max_model_len,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_tokens": config.max_tokens,
        "seed": config.seed,
        "stop": list(config.stop),
        "max_wiki_chars": max_wiki_chars,
    }


def image_workers(extras: dict, size_mb: float) -> int:
    """Processes that decode images: as given, or (0, the default) one per usable CPU for
    a shard of 256 MB or more; a small shard is not worth starting them."""
    given = int(extras.get("image_workers") or 0)
    if given:
        return given
    return default_workers() if size_mb >= 256 else 1


def run(extras: dict, log) -> dict:
    captioner = make_captioner(extras, log)
    describe = None
    if extras.get("descriptions"):
        describe = description_lookup(read_parquet(extras["descriptions"]).to_pylist())
    try:
        src = open_read(extras["input"])
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"input shard {extras['input']}: no such file") from exc
    # The sample count of a shard is unknown until it is read; its size in bytes is not.
    size_mb = shard_size(extras["input"]) / 1e6
    progress_log = ProgressLog(
        log.info,
        f"shard {extras.get('partition', '')}",
        round(size_mb, 1),
        "MB",
        min_interval=float(extras.get("progress_seconds", 10)),
    )

    def progress(stats: ShardStats) -> None:
        progress_log(
            round(min(stats.bytes_in / 1e6, size_mb), 1),
            extra=f"{stats.samples} samples, {stats.captioned} captioned",
        )

    # a run killed before (a preempted pod, an OOM kill) may have left its temporary shard
    for name in remove_stale_temps(extras["output"]):
        log.info(f"removed {name}, left by an earlier attempt that was killed")
    with src, atomic_open(extras["output"]) as out:
        dst = HashingWriter(out)
        stats = rewrite_shard(
            src,
            dst,
            captioner,
            describe,
            batch_size=int(extras.get("batch_size", 256)),
            check_images=extras.get("check_images", "decode"),
            image_workers=image_workers(extras, size_mb),
            progress=progress,
            source=f"input shard {extras['input']}",
        )
    stats.sha256 = dst.hexdigest()
    stats.generation = json.dumps(getattr(captioner, "parameters", {}), sort_keys=True)
    row = stats.as_row()
    log.info(f"shard {extras.get('partition', '')} done: {row}")
    return {**row, "examples": stats.examples, "errors": stats.errors, "output": extras["output"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input")
    parser.add_argument("--output")
    parser.add_argument("--source", default="cpu", choices=SOURCES)
    parser.add_argument("--descriptions", help="visual_descriptions Parquet")
    parser.add_argument(
        "--format-examples", dest="format_examples", help="format_examples.parquet (or .csv)"
    )
    parser.add_argument("--prompt", help="biocap-reference (default) or biocap-compact")
    parser.add_argument("--released-url", dest="released_url")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=256)
    parser.add_argument("--inference", type=json.loads, default={})
    args, _ = parser.parse_known_args(argv)
    cli = {k: v for k, v in vars(args).items() if v not in (None, "", {})}
    with worker_context(cli) as ctx:
        ctx.require(parser, "input", "output")
        ctx.report_result(run(ctx.extras, ctx.log))


if __name__ == "__main__":
    run_main(main)

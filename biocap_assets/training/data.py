"""webdataset input pipelines over (captioned) shards, local or on object storage.

Training draws shards with replacement (``ResampledShards``), seeded per rank and
loader worker, so every rank sees different samples and any number of ranks can
run the same fixed number of steps per epoch. Each sample becomes the image
tensor and the six tokenised texts; the loop picks one text type per step.
Validation reads its shards once, in order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import torch
import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_expander
from webdataset.utils import pytorch_worker_info

from biocap_assets.common.files import open_read
from biocap_assets.training.text_mix import TEXT_KEYS, TEXT_TYPES

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


def open_shards(src: Iterator[dict]) -> Iterator[dict]:
    """webdataset stage: open each shard URL with fsspec (file://, s3://, ...)."""
    for sample in src:
        yield {**sample, "stream": open_read(sample["url"])}


def has_all_texts(sample: dict) -> bool:
    return any(k in sample for k in IMAGE_KEYS) and all(TEXT_KEYS[t] in sample for t in TEXT_TYPES)


def to_training_pair(transform: Callable, tokenizer: Callable) -> Callable[[dict], tuple]:
    def convert(sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
        image = next(sample[k] for k in IMAGE_KEYS if k in sample)
        texts = [sample[TEXT_KEYS[t]] for t in TEXT_TYPES]
        return transform(image), tokenizer(texts)

    return convert


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    images, tokens = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(tokens)


def _worker_seed(seed: int) -> Callable[[], int]:
    def worker_seed() -> int:
        rank, _, worker, _ = pytorch_worker_info()
        return seed * 100_003 + rank * 1000 + worker

    return worker_seed


def train_pipeline(
    urls: Sequence[str],
    transform: Callable,
    tokenizer: Callable,
    batch_size: int,
    seed: int,
    shuffle_buffer: int = 1000,
) -> wds.DataPipeline:
    """An endless stream of batches; the loop decides how many steps make an epoch."""
    return wds.DataPipeline(
        wds.ResampledShards(list(urls), worker_seed=_worker_seed(seed), deterministic=True),
        open_shards,
        tar_file_expander,
        group_by_keys,
        wds.select(has_all_texts),
        wds.shuffle(shuffle_buffer, initial=min(100, shuffle_buffer), rng=random.Random(seed)),
        wds.decode("pilrgb", handler=wds.warn_and_continue),
        wds.map(to_training_pair(transform, tokenizer), handler=wds.warn_and_continue),
        wds.batched(batch_size, collation_fn=collate, partial=False),
    )


def eval_pipeline(
    urls: Sequence[str], transform: Callable, tokenizer: Callable, batch_size: int
) -> wds.DataPipeline:
    """Each sample once, in shard order (validation)."""
    return wds.DataPipeline(
        wds.SimpleShardList(list(urls)),
        open_shards,
        tar_file_expander,
        group_by_keys,
        wds.select(has_all_texts),
        wds.decode("pilrgb", handler=wds.warn_and_continue),
        wds.map(to_training_pair(transform, tokenizer), handler=wds.warn_and_continue),
        wds.batched(batch_size, collation_fn=collate, partial=True),
    )


def loader(pipeline: wds.DataPipeline, workers: int) -> torch.utils.data.DataLoader:
    return wds.WebLoader(
        pipeline, batch_size=None, num_workers=workers, persistent_workers=workers > 0
    )

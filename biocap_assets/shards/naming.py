"""Shard URL patterns and partition keys.

TreeOfLife-10M names its tars ``shard-000000.tar`` .. ``shard-000159.tar``; the
partition key of a shard is its six-digit number, so keys stay stable whatever
folder or bucket holds the tars.
"""

from __future__ import annotations

import re

import braceexpand

_SHARD_NUMBER = re.compile(r"(\d+)\.tar$")


def expand_shard_urls(pattern: str) -> list[str]:
    """Expand a brace pattern such as ``/data/shard-{000000..000159}.tar``."""
    urls = [u.strip() for part in pattern.split("::") for u in braceexpand.braceexpand(part)]
    urls = [u for u in urls if u]
    if not urls:
        raise ValueError(f"shard pattern {pattern!r} expands to no shard")
    return urls


def partition_key(url: str) -> str:
    """The partition key of a shard: its trailing number, zero-padded to six digits."""
    match = _SHARD_NUMBER.search(url)
    if not match:
        raise ValueError(f"shard {url!r}: name must end in <number>.tar, e.g. shard-000123.tar")
    return f"{int(match.group(1)):06d}"


# Validation shards' partition keys: ``val-000000``, beside the training shards' ``000000``.
VAL_PREFIX = "val-"


def shard_partitions(pattern: str, prefix: str = "") -> dict[str, str]:
    """Map partition key to shard URL; two shards with the same key are an error.
    ``prefix``: ``VAL_PREFIX`` for validation shards."""
    mapping: dict[str, str] = {}
    for url in expand_shard_urls(pattern):
        key = prefix + partition_key(url)
        if key in mapping:
            raise ValueError(f"shards {mapping[key]!r} and {url!r} share partition key {key}")
        mapping[key] = url
    return mapping


def train_and_val_partitions(pattern: str, val_pattern: str | None = None) -> dict[str, str]:
    """The training shards' partitions, then the validation shards' (``val-`` keys)."""
    urls = shard_partitions(pattern)
    return urls | (shard_partitions(val_pattern, VAL_PREFIX) if val_pattern else {})


def shard_filename(number: int) -> str:
    return f"shard-{number:06d}.tar"

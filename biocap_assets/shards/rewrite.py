"""Rewrite one webdataset shard with a ``caption.txt`` added to every sample.

Streams the input tar (memory is bounded by ``batch_size`` samples, not the
shard), captions a batch at a time, and writes every input member unchanged:
same name, same bytes, same header fields. A sample without an image, or whose
image does not decode, keeps its members, gets no caption and is counted. An
existing ``caption.txt`` is replaced, so re-captioning a shard is idempotent.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from biocap_assets.inference.tasks import Captioner, CaptionInput
from biocap_assets.shards.tarstream import END_OF_ARCHIVE, RawMember, iter_raw_members, member_bytes
from biocap_assets.shards.texts import RANKS

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
CAPTION_SUFFIX = "caption.txt"


@dataclass
class Member:
    raw: RawMember

    @property
    def data(self) -> bytes:
        return self.raw.data

    @property
    def suffix(self) -> str:
        return split_name(self.raw.name)[1]


@dataclass
class Sample:
    key: str
    members: list[Member] = field(default_factory=list)

    def get(self, suffix: str) -> bytes | None:
        for member in self.members:
            if member.suffix.lower() == suffix.lower():
                return member.data
        return None

    def text(self, suffix: str) -> str:
        data = self.get(suffix)
        return data.decode("utf-8", "replace").strip() if data else ""

    @property
    def image(self) -> bytes | None:
        for suffix in IMAGE_SUFFIXES:
            data = self.get(suffix)
            if data is not None:
                return data
        return None


def split_name(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is everything before the first dot of the basename."""
    folder, _, base = name.rpartition("/")
    stem, _, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), suffix


def iter_samples(fileobj: BinaryIO) -> Iterator[Sample]:
    """Samples in tar order; a sample is a run of consecutive members with one key.

    Members that are not regular files (folders, global headers) form no sample and
    are dropped, as webdataset does.
    """
    current: Sample | None = None
    for raw in iter_raw_members(fileobj):
        if not raw.is_file:
            continue
        key, _ = split_name(raw.name)
        if current is None or current.key != key:
            if current is not None:
                yield current
            current = Sample(key)
        current.members.append(Member(raw))
    if current is not None:
        yield current


def parse_taxon_tag(tag: str) -> dict[str, str]:
    """Ranks from ``a photo of kingdom X phylum Y ... species z[ with common name ...].``"""
    text = tag.strip().removeprefix("a photo of ").rstrip(".")
    text = text.split(" with common name ")[0]
    words = text.split()
    ranks: dict[str, str] = {}
    i = 0
    while i < len(words) - 1:
        if words[i] in RANKS:
            j = i + 1
            while j < len(words) and words[j] not in RANKS:
                j += 1
            ranks[words[i]] = " ".join(words[i + 1 : j])
            i = j
        else:
            i += 1
    return ranks


def image_problem(data: bytes | None) -> str | None:
    """None when the image decodes; else 'no_image' or 'bad_image'.

    JPEGs decode at 1/8 scale (``draft``): every byte of the entropy-coded data is
    still read, so truncation and corruption are caught, at a fraction of the cost.
    """
    if data is None:
        return "no_image"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (1, 1))
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return "bad_image"
    return None


@dataclass
class ShardStats:
    samples: int = 0
    captioned: int = 0
    no_image: int = 0
    bad_image: int = 0
    failed: int = 0
    caption_words: int = 0
    bytes_in: int = 0
    seconds: float = 0.0
    backend: str = ""
    model: str = ""
    errors: list[str] = field(default_factory=list)
    examples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def mean_caption_words(self) -> float:
        return self.caption_words / self.captioned if self.captioned else 0.0

    @property
    def captioned_share(self) -> float:
        return self.captioned / self.samples if self.samples else 0.0

    def as_row(self) -> dict:
        return {
            "samples": self.samples,
            "captioned": self.captioned,
            "skipped": self.samples - self.captioned,
            "no_image": self.no_image,
            "bad_image": self.bad_image,
            "failed": self.failed,
            "mean_caption_words": round(self.mean_caption_words, 3),
            "bytes_in": self.bytes_in,
            "seconds": round(self.seconds, 3),
            "backend": self.backend,
            "model": self.model,
        }


DescriptionLookup = Callable[[dict[str, str]], str | None]


def _write_sample(out: BinaryIO, sample: Sample, caption: str | None) -> None:
    last = None
    for member in sample.members:
        if member.suffix.lower() == CAPTION_SUFFIX:
            continue  # replaced below
        out.write(member.raw.raw)
        last = member.raw
    if caption is not None:
        out.write(
            member_bytes(
                f"{sample.key}.{CAPTION_SUFFIX}",
                caption.encode("utf-8"),
                mtime=last.mtime if last else 0,
                mode=last.mode if last else 0o644,
            )
        )


def _batches(samples: Iterator[Sample], size: int) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _caption_input(sample: Sample, describe: DescriptionLookup | None) -> CaptionInput:
    ranks = parse_taxon_tag(sample.text("taxonTag.txt"))
    return CaptionInput(
        key=sample.key,
        image=sample.image,
        scientific=sample.text("scientific_name.txt") or ranks.get("genus", ""),
        common=sample.text("common_name.txt") or None,
        cls=ranks.get("class"),
        description=describe(ranks) if describe else None,
    )


def rewrite_shard(
    src: BinaryIO,
    dst: BinaryIO,
    captioner: Captioner,
    describe: DescriptionLookup | None = None,
    batch_size: int = 256,
    progress: Callable[[ShardStats], None] | None = None,
    n_examples: int = 5,
    check_images: bool = True,
) -> ShardStats:
    """Copy ``src`` to ``dst`` with captions added; ``dst`` gets a complete tar or an error.

    ``check_images=False`` skips decoding (only a missing image is caught): for shards
    already checked, when the rewrite itself must go faster.
    """
    stats = ShardStats(backend=captioner.backend, model=captioner.model)
    started = time.perf_counter()
    for batch in _batches(iter_samples(src), batch_size):
        inputs: list[CaptionInput] = []
        for sample in batch:
            stats.samples += 1
            stats.bytes_in += sum(len(m.raw.raw) for m in sample.members)
            image = sample.image
            problem = image_problem(image) if check_images or image is None else None
            if problem:
                setattr(stats, problem, getattr(stats, problem) + 1)
            else:
                inputs.append(_caption_input(sample, describe))
        outcomes = dict(zip((i.key for i in inputs), captioner.caption_batch(inputs), strict=True))
        for sample in batch:
            outcome = outcomes.get(sample.key)
            caption = outcome.caption if outcome is not None else None
            if outcome is not None and caption is None:
                stats.failed += 1
                if len(stats.errors) < 20:
                    stats.errors.append(f"{sample.key}: {outcome.error}")
            if caption is not None:
                stats.captioned += 1
                stats.caption_words += len(caption.split())
                if len(stats.examples) < n_examples:
                    stats.examples.append((sample.key, caption))
            _write_sample(dst, sample, caption)
        if progress is not None:
            progress(stats)
    dst.write(END_OF_ARCHIVE)
    stats.seconds = time.perf_counter() - started
    return stats


def shard_keys(fileobj: BinaryIO) -> list[str]:
    """Sample keys of a shard, in order (one pass)."""
    return [sample.key for sample in iter_samples(fileobj)]


def description_lookup(rows: Sequence[dict]) -> DescriptionLookup:
    """Find a sample's visual description by its full ranks, else by its binomial."""
    by_ranks: dict[tuple[str, ...], str] = {}
    by_binomial: dict[str, str] = {}
    for row in rows:
        text = row.get("description") or ""
        if not text:
            continue
        by_ranks[tuple((row.get(r) or "").lower() for r in RANKS)] = text
        by_binomial.setdefault(f"{row.get('genus', '')} {row.get('species', '')}".lower(), text)

    def lookup(ranks: dict[str, str]) -> str | None:
        exact = by_ranks.get(tuple((ranks.get(r) or "").lower() for r in RANKS))
        if exact:
            return exact
        return by_binomial.get(f"{ranks.get('genus', '')} {ranks.get('species', '')}".lower())

    return lookup

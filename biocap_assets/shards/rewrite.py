"""Rewrite one webdataset shard with a ``caption.txt`` added to every sample.

Streams the input tar (memory is bounded by ``batch_size`` samples, not the
shard), captions a batch at a time, and writes every input member unchanged:
same name, same bytes, same header fields. A sample without an image, or whose
image does not decode, keeps its members, gets no caption and is counted. An
existing ``caption.txt`` is replaced, so re-captioning a shard is idempotent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from biocap_assets.inference.tasks import Captioner, CaptionInput
from biocap_assets.shards.images import ImageChecker, decode_problem
from biocap_assets.shards.tarstream import (
    END_OF_ARCHIVE,
    RawMember,
    TarFormatError,
    iter_raw_members,
    member_bytes,
)
from biocap_assets.taxonomy.names import RANKS, SampleNames, parse_taxon_tag

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
CAPTION_SUFFIX = "caption.txt"


@dataclass
class Member:
    raw: RawMember
    suffix: str  # webdataset's suffix of the name (``jpg``, ``taxonTag.txt``)

    @property
    def data(self) -> bytes:
        return self.raw.data


@dataclass
class Sample:
    key: str
    members: list[Member] = field(default_factory=list)
    # members before this sample that are not regular files (folders, global PAX headers):
    # webdataset skips them, the rewrite copies them through where they were
    others: list[RawMember] = field(default_factory=list)

    @property
    def is_sample(self) -> bool:
        """False for the holder of non-file members after the last sample."""
        return bool(self.members)

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

    Members that are not regular files (folders, global headers) form no sample, as in
    webdataset; each rides along with the sample after it (``others``), and any after the
    last sample come in a last ``Sample`` without members.
    """
    current: Sample | None = None
    others: list[RawMember] = []
    for raw in iter_raw_members(fileobj):
        if not raw.is_file:
            others.append(raw)
            continue
        key, suffix = split_name(raw.name)
        if current is None or current.key != key:
            if current is not None:
                yield current
            current, others = Sample(key, others=others), []
        current.members.append(Member(raw, suffix))
    if current is not None:
        yield current
    if others:
        yield Sample("", others=others)


# how a sample's image is judged (the decode check); ``shards.images`` has the others
image_problem = decode_problem


@dataclass
class ShardStats:
    samples: int = 0
    captioned: int = 0
    no_image: int = 0
    bad_image: int = 0
    no_taxon: int = 0
    failed: int = 0
    caption_words: int = 0
    bytes_in: int = 0
    seconds: float = 0.0
    backend: str = ""
    model: str = ""
    prompt: str = ""
    prompt_sha256: str = ""
    examples_class: int = 0  # samples prompted with their class's format examples
    examples_fallback: int = 0  # samples prompted with the fallback examples
    generation: str = ""  # JSON: the generation settings in effect
    sha256: str = ""  # the output tar's digest
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
            "no_taxon": self.no_taxon,
            "failed": self.failed,
            "mean_caption_words": round(self.mean_caption_words, 3),
            "bytes_in": self.bytes_in,
            "seconds": round(self.seconds, 3),
            "backend": self.backend,
            "model": self.model,
            "prompt": self.prompt,
            "prompt_sha256": self.prompt_sha256,
            "examples_class": self.examples_class,
            "examples_fallback": self.examples_fallback,
            "generation": self.generation,
            "sha256": self.sha256,
        }


DescriptionLookup = Callable[[dict[str, str]], str | None]


def _write_sample(out: BinaryIO, sample: Sample, caption: str | None) -> None:
    for other in sample.others:
        out.writelines(other.parts)
    last = None
    for member in sample.members:
        if member.suffix.lower() == CAPTION_SUFFIX:
            continue  # replaced below
        out.writelines(member.raw.parts)
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


def sample_names(sample: Sample) -> SampleNames:
    """The names a sample's text members give (webdataset's lower-cased suffixes too)."""
    ranks = parse_taxon_tag(sample.text("taxonTag.txt"))
    return SampleNames(
        common=sample.text("common_name.txt"),
        scientific=sample.text("scientific_name.txt"),
        taxonomic=sample.text("taxonomic_name.txt"),
        ranks=tuple((r, ranks[r]) for r in RANKS if ranks.get(r)),
    )


def _caption_input(sample: Sample, describe: DescriptionLookup | None) -> CaptionInput:
    names = sample_names(sample)
    return CaptionInput(
        key=sample.key,
        image=sample.image,
        names=names,
        description=describe(names.rank) if describe else None,
    )


def rewrite_shard(
    src: BinaryIO,
    dst: BinaryIO,
    captioner: Captioner,
    describe: DescriptionLookup | None = None,
    batch_size: int = 256,
    progress: Callable[[ShardStats], None] | None = None,
    n_examples: int = 5,
    check_images: str | bool = "decode",
    source: str = "",
    image_workers: int = 1,
) -> ShardStats:
    """Copy ``src`` to ``dst`` with captions added; ``dst`` gets a complete tar or an error.

    ``check_images``: ``decode`` (every image decoded; over ``image_workers`` processes),
    ``structure`` (JPEG and PNG checked by their structure, not decoded; see
    ``shards.images``) or ``none`` (only a missing image is caught: for shards already
    checked, when the rewrite itself must go faster). A sample whose text members
    name no taxon gets no caption from a generative or template captioner (counted as
    ``no_taxon``; TreeOfLife-10M's writer never makes one). A shard that is not a plain,
    whole tar fails with a :class:`TarFormatError` naming ``source``.
    """
    stats = ShardStats(
        backend=captioner.backend,
        model=captioner.model,
        prompt=captioner.prompt,
        prompt_sha256=captioner.prompt_sha256,
    )
    started = time.perf_counter()
    samples = iter_samples(src)
    mode = {True: "decode", False: "none"}.get(check_images, check_images)
    try:
        with ImageChecker(mode, image_workers) as checker:
            for batch in _batches(samples, batch_size):
                _caption_batch(batch, dst, captioner, describe, checker, stats, n_examples)
                if progress is not None:
                    progress(stats)
    except TarFormatError as exc:
        raise TarFormatError(f"{source or 'shard'}: {exc}") from None
    if not stats.samples:
        raise TarFormatError(f"{source or 'shard'}: a tar without samples (an empty shard)")
    dst.write(END_OF_ARCHIVE)
    stats.seconds = time.perf_counter() - started
    stats.examples_class = captioner.examples_used["class"]
    stats.examples_fallback = captioner.examples_used["fallback"]
    return stats


def _caption_batch(
    batch: list[Sample],
    dst: BinaryIO,
    captioner: Captioner,
    describe: DescriptionLookup | None,
    checker: ImageChecker,
    stats: ShardStats,
    n_examples: int,
) -> None:
    inputs: list[CaptionInput] = []
    asked: list[int] = []  # batch positions of the inputs (two samples may share a key)
    by_key = captioner.backend == "released"  # released captions need no names
    problems = checker.problems([s.image if s.is_sample else b"" for s in batch])
    for position, sample in enumerate(batch):
        if not sample.is_sample:
            continue
        stats.samples += 1
        stats.bytes_in += sum(m.raw.size for m in sample.members)
        problem = problems[position]
        if problem:
            setattr(stats, problem, getattr(stats, problem) + 1)
            continue
        item = _caption_input(sample, describe)
        if item.names.empty and not by_key:
            stats.no_taxon += 1
            continue
        inputs.append(item)
        asked.append(position)
    outcomes = dict(zip(asked, captioner.caption_batch(inputs), strict=True))
    for position, sample in enumerate(batch):
        outcome = outcomes.get(position)
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


def shard_keys(fileobj: BinaryIO) -> list[str]:
    """Sample keys of a shard, in order (one pass)."""
    return [sample.key for sample in iter_samples(fileobj) if sample.is_sample]


def description_lookup(rows: Sequence[dict]) -> DescriptionLookup:
    """Find a sample's visual description by its full seven ranks (case-insensitive).

    ``rows``: the visual_descriptions table, one row per taxon (with or without a
    description). A sample whose ranks match no row falls back to its binomial only when
    that binomial names a single taxon there: a hemihomonym ("Abronia umbellata", a plant
    and a lizard) never gets the other taxon's text. Counting there is counting in
    ``taxa``: visual_descriptions keeps a row for every wiki_pages row, and wiki_pages one
    for every taxon (its ``every_taxon_has_a_row`` check).
    """
    by_ranks: dict[tuple[str, ...], str] = {}
    by_binomial: dict[str, str] = {}
    taxa_per_binomial: Counter[str] = Counter()
    for row in rows:
        binomial = _binomial(row)
        if binomial:
            taxa_per_binomial[binomial] += 1
        text = row.get("description") or ""
        if text:
            by_ranks[_rank_key(row)] = text
            if binomial:
                by_binomial[binomial] = text
    unique = {b: t for b, t in by_binomial.items() if taxa_per_binomial[b] == 1}

    def lookup(ranks: dict[str, str]) -> str | None:
        exact = by_ranks.get(_rank_key(ranks))
        if exact:
            return exact
        return unique.get(_binomial(ranks))

    return lookup


def _rank_key(ranks: dict) -> tuple[str, ...]:
    return tuple((ranks.get(r) or "").strip().lower() for r in RANKS)


def _binomial(ranks: dict) -> str:
    genus, species = (ranks.get("genus") or "").strip(), (ranks.get("species") or "").strip()
    return f"{genus} {species}".lower() if genus and species else ""

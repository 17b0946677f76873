"""The two jobs inference does, over any backend: filter descriptions, caption samples.

Each job has a generative implementation (a :class:`Backend`: vLLM or an
OpenAI-compatible server) and a no-GPU one; every result records the backend and
model that produced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from biocap_assets.inference import prompts
from biocap_assets.inference.base import Backend, GenerationRequest, request_seed
from biocap_assets.inference.cpu import RuleDescriptionFilter, TemplateCaptioner

# -- descriptions -----------------------------------------------------------------------


@dataclass(frozen=True)
class DescriptionInput:
    taxon_id: str
    binomial: str
    common_name: str | None
    text: str


@dataclass(frozen=True)
class DescriptionResult:
    taxon_id: str
    description: str
    status: str  # ok | empty | error
    reason: str
    backend: str
    model: str


def _status(description: str) -> str:
    return "ok" if description else "empty"


def filter_with_rules(items: Sequence[DescriptionInput]) -> list[DescriptionResult]:
    rules = RuleDescriptionFilter()
    results = []
    for item in items:
        description = rules.describe(item.text)
        results.append(
            DescriptionResult(
                item.taxon_id, description, _status(description), "", rules.backend, rules.model
            )
        )
    return results


def filter_with_model(
    items: Sequence[DescriptionInput], backend: Backend, seed: int = 0
) -> list[DescriptionResult]:
    """One pass over all items, then one retry for the answers that were not valid JSON."""

    def requests(batch: Sequence[DescriptionInput], attempt: int) -> list[GenerationRequest]:
        reminder = (
            ""
            if attempt == 0
            else (
                "\nYour previous answer was not valid. Reply with JSON only: "
                '{"visual_description": "..."}'
            )
        )
        return [
            GenerationRequest(
                id=i.taxon_id,
                instruction=prompts.DESCRIPTION_INSTRUCTION,
                text=prompts.description_text(i.binomial, i.common_name, i.text) + reminder,
                seed=request_seed(seed + attempt, i.taxon_id),
            )
            for i in batch
        ]

    results: dict[str, DescriptionResult] = {}
    pending = list(items)
    for attempt in range(2):
        if not pending:
            break
        answers = backend.generate(requests(pending, attempt))
        retry = []
        for item, answer in zip(pending, answers, strict=True):
            try:
                if not answer.ok:
                    raise ValueError(answer.error or "no answer")
                description = prompts.parse_description_answer(answer.text or "")
                results[item.taxon_id] = DescriptionResult(
                    item.taxon_id,
                    description,
                    _status(description),
                    "",
                    backend.name,
                    backend.model,
                )
            except ValueError as exc:
                if attempt == 0:
                    retry.append(item)
                else:
                    results[item.taxon_id] = DescriptionResult(
                        item.taxon_id,
                        "",
                        "error",
                        f"invalid answer twice: {exc}",
                        backend.name,
                        backend.model,
                    )
        pending = retry
    return [results[i.taxon_id] for i in items]


# -- captions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionInput:
    key: str
    image: bytes | None
    scientific: str
    common: str | None
    cls: str | None
    description: str | None


@dataclass(frozen=True)
class CaptionOutcome:
    caption: str | None
    error: str | None = None


class Captioner(Protocol):
    backend: str
    model: str

    def caption_batch(self, items: Sequence[CaptionInput]) -> list[CaptionOutcome]: ...


class GenerativeCaptioner:
    """A VLM through a backend; the instruction comes first for prefix caching."""

    def __init__(self, backend: Backend, examples: prompts.FormatExamples, seed: int = 0):
        self._backend, self._examples, self._seed = backend, examples, seed
        self.backend, self.model = backend.name, backend.model

    def caption_batch(self, items: Sequence[CaptionInput]) -> list[CaptionOutcome]:
        requests = [
            GenerationRequest(
                id=i.key,
                instruction=prompts.CAPTION_INSTRUCTION,
                text=prompts.caption_text(
                    i.scientific, i.common, i.cls, self._examples.for_class(i.cls), i.description
                ),
                image=i.image,
                seed=request_seed(self._seed, i.key),
            )
            for i in items
        ]
        outcomes = []
        for answer in self._backend.generate(requests):
            text = prompts.clean_caption(answer.text or "") if answer.ok else ""
            outcomes.append(
                CaptionOutcome(text, None)
                if text
                else CaptionOutcome(None, answer.error or "empty answer")
            )
        return outcomes


class TemplateCaptionerAdapter:
    """The CPU template captioner (no model): name + traits from the description."""

    def __init__(self):
        self._template = TemplateCaptioner()
        self.backend, self.model = self._template.backend, self._template.model

    def caption_batch(self, items: Sequence[CaptionInput]) -> list[CaptionOutcome]:
        return [
            CaptionOutcome(self._template.caption(i.scientific, i.common, i.description))
            for i in items
        ]


class ReleasedCaptioner:
    """Captions from the released TreeOfLife-10M-Captions, by sample key; never invented."""

    backend = "released"

    def __init__(self, captions: Mapping[str, str], model: str = "TreeOfLife-10M-Captions"):
        self._captions, self.model = captions, model

    def caption_batch(self, items: Sequence[CaptionInput]) -> list[CaptionOutcome]:
        outcomes = []
        for item in items:
            caption = self._captions.get(item.key)
            outcomes.append(
                CaptionOutcome(caption)
                if caption
                else CaptionOutcome(None, "no released caption for this key")
            )
        return outcomes


class NoopCaptioner:
    """A constant caption, to measure the shard rewrite alone (benchmarks)."""

    backend, model = "noop", "constant"

    def caption_batch(self, items: Sequence[CaptionInput]) -> list[CaptionOutcome]:
        return [CaptionOutcome("a photo.") for _ in items]

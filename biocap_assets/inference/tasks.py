"""The two jobs inference does, over any backend: filter descriptions, caption samples.

Each job has a generative implementation (a :class:`Backend`: vLLM or an
OpenAI-compatible server) and a no-GPU one; every result records the backend and
model that produced it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from biocap_assets.inference import prompts
from biocap_assets.inference.base import Backend, GenerationRequest, request_seed
from biocap_assets.inference.cpu import RuleDescriptionFilter, TemplateCaptioner
from biocap_assets.taxonomy.names import SampleNames, taxon_label

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
    names: SampleNames
    description: str | None  # the taxon's visual description (the prompt's excerpt)

    @property
    def cls(self) -> str | None:
        return self.names.rank.get("class") or None


@dataclass(frozen=True)
class CaptionOutcome:
    caption: str | None
    error: str | None = None


class Captioner(Protocol):
    backend: str
    model: str
    prompt: str  # the prompt's name ("" without one)
    prompt_sha256: str
    examples_used: Counter  # "class" (class-specific format examples) | "fallback"

    def caption_batch(self, items: Sequence[CaptionInput]) -> list[CaptionOutcome]: ...


class GenerativeCaptioner:
    """A VLM through a backend, with BioCAP's caption prompt (or our compact one)."""

    def __init__(
        self,
        backend: Backend,
        examples: prompts.FormatExamples,
        seed: int = 0,
        prompt: str = prompts.REFERENCE_PROMPT,
        max_wiki_chars: int = prompts.REFERENCE_EXCERPT_CHARS,
    ):
        if prompt not in prompts.CAPTION_PROMPTS:
            raise ValueError(f"prompt must be one of {prompts.CAPTION_PROMPTS}, got {prompt!r}")
        self._backend, self._examples, self._seed = backend, examples, seed
        self._max_wiki_chars = max_wiki_chars
        self.backend, self.model = backend.name, backend.model
        self.prompt = prompt
        self.prompt_sha256 = prompts.caption_prompt_sha256(prompt)
        self.examples_used: Counter = Counter()
        self.parameters: dict = {}  # the generation settings in effect (recorded per shard)

    def request(self, item: CaptionInput) -> GenerationRequest:
        examples = self._examples.lookup(item.cls)
        self.examples_used["class" if examples else "fallback"] += 1
        seed = request_seed(self._seed, item.key)
        names = item.names
        if self.prompt == prompts.REFERENCE_PROMPT:
            species_name = names.common or names.scientific or names.taxonomic
            text = prompts.reference_caption_text(
                species_name,
                names.scientific or names.taxonomic,
                examples,
                (item.description or "")[: max(0, self._max_wiki_chars)],
            )
            return GenerationRequest(
                item.key, "", text, image=item.image, seed=seed, raw_template="internvl"
            )
        text = prompts.compact_caption_text(
            taxon_label(names),
            names.real_common or None,
            item.cls,
            self._examples.for_class(item.cls),
            item.description,
        )
        return GenerationRequest(
            item.key, prompts.COMPACT_INSTRUCTION, text, image=item.image, seed=seed
        )

    def caption_batch(self, items: Sequence[CaptionInput]) -> list[CaptionOutcome]:
        outcomes = []
        # caption_gen keeps the model's text as it is, stripped; our prompt's answers may
        # carry a "Caption:" label or quotes, which clean_caption removes.
        tidy = str.strip if self.prompt == prompts.REFERENCE_PROMPT else prompts.clean_caption
        for answer in self._backend.generate([self.request(i) for i in items]):
            text = tidy(answer.text or "") if answer.ok else ""
            outcomes.append(
                CaptionOutcome(text, None)
                if text
                else CaptionOutcome(None, answer.error or "empty answer")
            )
        return outcomes


class TemplateCaptionerAdapter:
    """The CPU template captioner (no model): name + traits from the description."""

    prompt, prompt_sha256 = "", ""

    def __init__(self):
        self._template = TemplateCaptioner()
        self.backend, self.model = self._template.backend, self._template.model
        self.examples_used: Counter = Counter()

    def caption_batch(self, items: Sequence[CaptionInput]) -> list[CaptionOutcome]:
        outcomes = []
        for i in items:
            caption = self._template.caption(
                taxon_label(i.names), i.names.real_common or None, i.description
            )
            outcomes.append(
                CaptionOutcome(caption) if caption else CaptionOutcome(None, "no taxon text")
            )
        return outcomes


class ReleasedCaptioner:
    """Captions from the released TreeOfLife-10M-Captions, by sample key; never invented."""

    backend = "released"
    prompt, prompt_sha256 = "", ""

    def __init__(self, captions: Mapping[str, str], model: str = "TreeOfLife-10M-Captions"):
        self._captions, self.model = captions, model
        self.examples_used: Counter = Counter()

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
    prompt, prompt_sha256 = "", ""

    def __init__(self):
        self.examples_used: Counter = Counter()

    def caption_batch(self, items: Sequence[CaptionInput]) -> list[CaptionOutcome]:
        return [CaptionOutcome("a photo.") for _ in items]

"""Prompt building on the real format examples, answer validation, CPU fallbacks."""

import csv

import pytest

from biocap_assets.inference import prompts
from biocap_assets.inference.base import GenerationRequest, chat_messages
from biocap_assets.inference.cpu import RuleDescriptionFilter, TemplateCaptioner
from biocap_assets.inference.tasks import CaptionInput, GenerativeCaptioner

REAL = "biocap/data/wiki_and_format_example/format_examples.csv"


def test_real_format_examples_pick_the_right_class(reference_data):
    examples = prompts.FormatExamples.from_csv(reference_data / REAL)
    with (reference_data / REAL).open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 347
    # 14 classes say "N/A" (pandas reads that as NaN) and one is blank.
    empty = [r["class"] for r in rows if r["description"].strip() in ("", "N/A")]
    assert len(empty) == 15
    assert len(examples.by_class) == 347 - 15
    insecta = examples.for_class("Insecta")
    assert len(insecta) == 3 and insecta[0].startswith("The Orchid Mantis, Hymenopus coronatus")
    assert all(not e[:2].rstrip(".").isdigit() for e in insecta), "numbering is stripped"
    for cls in empty:
        fallback = examples.for_class(cls)
        assert fallback == prompts.DEFAULT_EXAMPLES
        assert all("nan" not in e.lower().split() for e in fallback)
    assert examples.for_class("NoSuchClass") == prompts.DEFAULT_EXAMPLES
    assert examples.for_class(None) == prompts.DEFAULT_EXAMPLES


def test_nan_and_empty_never_become_examples(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text('class,description\nAves,nan\nInsecta,\nMammalia,"1.One. 2.Two."\n')
    examples = prompts.FormatExamples.from_csv(path)
    assert examples.for_class("Aves") == prompts.DEFAULT_EXAMPLES
    assert examples.for_class("Mammalia") == ("One.", "Two.")
    bad = tmp_path / "bad.csv"
    bad.write_text("klass,text\nA,B\n")
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) class, description"):
        prompts.FormatExamples.from_csv(bad)


def test_reference_is_cut_at_a_word_boundary():
    text = "word " * 300
    cut = prompts.cut_reference(text)
    assert len(cut) <= prompts.REFERENCE_CHARS + 2 and cut.endswith("…")
    assert not cut[:-2].endswith("wor")
    assert prompts.cut_reference("short text") == "short text"
    assert prompts.cut_reference(None) == ""


def test_instruction_comes_first_then_the_image_then_the_sample():
    captioner_requests = []

    class Recorder:
        name, model = "recorder", "m"

        def generate(self, requests):
            captioner_requests.extend(requests)
            from biocap_assets.inference.base import Generation

            return [
                Generation(r.id, "Caption: A red bird, Cardinalis cardinalis.") for r in requests
            ]

    items = [
        CaptionInput(
            key=k,
            image=b"\xff\xd8jpeg",
            scientific="Cardinalis cardinalis",
            common="northern cardinal",
            cls="Aves",
            description="The male is red. " * 100,
        )
        for k in ("a", "b")
    ]
    outcomes = GenerativeCaptioner(Recorder(), prompts.FormatExamples({}), seed=1).caption_batch(
        items
    )
    assert [o.caption for o in outcomes] == ["A red bird, Cardinalis cardinalis."] * 2
    first, second = captioner_requests
    assert first.instruction == second.instruction == prompts.CAPTION_INSTRUCTION
    assert first.seed != second.seed and first.seed is not None
    content = chat_messages(first)[0]["content"]
    assert [c["type"] for c in content] == ["text", "image_url", "text"]
    assert content[0]["text"] == prompts.CAPTION_INSTRUCTION
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert "Cardinalis cardinalis (northern cardinal)" in content[2]["text"]
    assert "Class: Aves" in content[2]["text"]
    reference = content[2]["text"].split("Reference description (for terms only): ")[1]
    assert len(reference.split("\n")[0]) <= prompts.REFERENCE_CHARS + 2


def test_text_only_requests_have_no_image_part():
    content = chat_messages(GenerationRequest("x", "Do it.", "Text"))[0]["content"]
    assert [c["type"] for c in content] == ["text", "text"]


@pytest.mark.parametrize(
    "answer,expected",
    [
        ('{"visual_description": "Red  with a crest."}', "Red with a crest."),
        ('```json\n{"visual_description": ""}\n```', ""),
    ],
)
def test_valid_description_answers(answer, expected):
    assert prompts.parse_description_answer(answer) == expected


@pytest.mark.parametrize(
    "answer", ["Red with a crest.", '{"description": "x"}', "[1, 2]", '{"visual_description": 3}']
)
def test_invalid_description_answers(answer):
    with pytest.raises(ValueError):
        prompts.parse_description_answer(answer)


def test_rule_filter_keeps_visual_sentences_only():
    text = (
        "The fly agaric has a domed red cap with white warts. It is found in birch woods. "
        "The species was described by Linnaeus in 1753. The stipe is 5 to 20 cm tall."
    )
    assert RuleDescriptionFilter().describe(text) == (
        "The fly agaric has a domed red cap with white warts. The stipe is 5 to 20 cm tall."
    )


def test_template_caption_names_the_species_and_invents_nothing():
    description = "The blue jay has a crest. It is blue with white bars on the wings."
    caption = TemplateCaptioner().caption("Cyanocitta cristata", "blue jay", description)
    assert caption == "Blue jay, Cyanocitta cristata: blue with white bars on the wings."
    assert len(caption.split()) <= 20
    words = set(caption.lower().replace(",", "").replace(":", "").rstrip(".").split())
    assert words <= set(
        f"cyanocitta cristata blue jay {description}".lower().replace(".", "").split()
    )
    assert TemplateCaptioner().caption("Corvus corax", None, None) == "A photo of Corvus corax."

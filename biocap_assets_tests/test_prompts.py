"""Prompt building on the real format examples, answer validation, CPU fallbacks."""

import pytest

from biocap_assets.inference import prompts
from biocap_assets.inference.base import (
    INTERNVL_STOP,
    GenerationRequest,
    SamplingConfig,
    chat_messages,
)
from biocap_assets.inference.cpu import RuleDescriptionFilter, TemplateCaptioner
from biocap_assets.inference.tasks import CaptionInput, GenerativeCaptioner
from biocap_assets.taxonomy.names import SampleNames, taxon_label

REAL = "biocap/data/wiki_and_format_example/format_examples.csv"


PARQUET = "biocap/data/wiki_and_format_example/format_examples.parquet"
# caption_gen/caption/prompts.py build_prompt, for species_name "northern cardinal",
# scientific_name "Cardinalis cardinalis", the Aves examples "E" and the excerpt "X".
PINNED = (
    "You are a biologist describing organisms based strictly on what is visible in the "
    "image.Your goal is to produce a concise caption that highlights diagnostic, image-based "
    "traits.Focus primarily on anatomical structures (e.g., color, shape, pattern, texture, "
    "position).If clearly visible, you may mention substrate, scale cues, or explicit "
    "interactions.Use precise biological terminology. Avoid vague or generic words.\n\n"
    "Examples of good captions:\nE\n\n"
    "Reference excerpt about Cardinalis cardinalis (use only to standardize correct terms "
    "that match visible traits; do not copy text; do not add traits not visible in the "
    "image):\nX\n\n"
    "The caption must not exceed 20 words."
    'Include the species name "northern cardinal" naturally in the sentence.'
    "Priority order: (1) the most diagnostic visible trait, (2) a secondary distinctive "
    "trait, (3) a contextual detail only if it strengthens identification."
    "For the following image of a northern cardinal, write a single, concise sentence "
    "describing its visible traits."
)


def test_the_reference_prompt_text_is_pinned():
    text = prompts.reference_caption_text("northern cardinal", "Cardinalis cardinalis", "E", "X")
    assert text == PINNED


def test_the_reference_prompt_without_excerpt_or_class_examples():
    text = prompts.reference_caption_text("Abronia umbellata", "Abronia umbellata", None, "")
    assert "Reference excerpt" not in text
    assert "Examples of good captions:\n1. Amanita muscaria displays a vibrant red cap" in text
    assert "2. Athyrium filix-femina features" in text and "3. Papilio machaon exhibits" in text
    assert text.endswith(
        "For the following image of a Abronia umbellata, write a single, concise sentence "
        "describing its visible traits."
    )


def _item(names, description="The male is red with a black mask. " * 40, key="k1"):
    return CaptionInput(key=key, image=b"\xff\xd8jpeg", names=names, description=description)


CARDINAL = SampleNames(
    common="northern cardinal",
    scientific="Cardinalis cardinalis",
    taxonomic="Animalia Chordata Aves Passeriformes Cardinalidae Cardinalis cardinalis",
    ranks=(("kingdom", "Animalia"), ("class", "Aves"), ("genus", "Cardinalis")),
)
FLY = SampleNames(  # a BIOSCAN sample known to family: make_txt's names for it
    common="Animalia Arthropoda Insecta Diptera Cecidomyiidae",
    scientific="",
    taxonomic="Animalia Arthropoda Insecta Diptera Cecidomyiidae",
    ranks=(
        ("kingdom", "Animalia"),
        ("phylum", "Arthropoda"),
        ("class", "Insecta"),
        ("order", "Diptera"),
        ("family", "Cecidomyiidae"),
    ),
)


class Recorder:
    name, model = "recorder", "m"

    def __init__(self):
        self.requests = []

    def generate(self, requests):
        from biocap_assets.inference.base import Generation

        self.requests.extend(requests)
        return [Generation(r.id, "Caption: A red bird, Cardinalis cardinalis.") for r in requests]


def test_the_reference_prompt_is_built_from_the_samples_names_as_caption_gen_does():
    examples = prompts.FormatExamples({"aves": "1.Bird one. 2.Bird two."})
    recorder = Recorder()
    captioner = GenerativeCaptioner(recorder, examples, seed=1)
    outcomes = captioner.caption_batch([_item(CARDINAL), _item(FLY, None, key="k2")])
    # caption_gen keeps the answer as the model gave it, only stripped
    assert [o.caption for o in outcomes] == ["Caption: A red bird, Cardinalis cardinalis."] * 2
    cardinal, fly = recorder.requests
    assert cardinal.raw_template == "internvl" and cardinal.instruction == ""
    assert cardinal.raw_prompt.startswith("<|im_start|>user\n<image>\nYou are a biologist")
    assert cardinal.raw_prompt.endswith("visible traits.<|im_end|>\n<|im_start|>assistant\n")
    assert "Examples of good captions:\n1.Bird one. 2.Bird two.\n\n" in cardinal.text
    excerpt = cardinal.text.split("do not add traits not visible in the image):\n")[1]
    assert excerpt.split("\n\n")[0] == ("The male is red with a black mask. " * 40)[:600]
    assert 'species name "northern cardinal"' in cardinal.text
    # species_name = common, else scientific, else taxonomic name (caption_gen/generator.py)
    assert 'species name "Animalia Arthropoda Insecta Diptera Cecidomyiidae"' in fly.text
    assert "Reference excerpt" not in fly.text
    assert captioner.examples_used == {"class": 1, "fallback": 1}
    assert cardinal.seed != fly.seed


def test_internvls_chat_template_renders_the_reference_prompt(tmp_path):
    """For servers that take chat requests only: rendered as transformers renders chat
    templates (jinja2, trim_blocks, lstrip_blocks), after vLLM has put InternVL's image
    placeholder and a newline before the text, the prompt is caption_gen's raw one."""
    import jinja2

    from biocap_assets.inference.base import INTERNVL_CHAT_TEMPLATE
    from biocap_assets.inference.openai_backend import request_payload

    recorder = Recorder()
    GenerativeCaptioner(recorder, prompts.FormatExamples({})).caption_batch([_item(CARDINAL)])
    (request,) = recorder.requests
    payload = request_payload(
        "OpenGVLab/InternVL3-38B-AWQ", SamplingConfig(stop=INTERNVL_STOP), request
    )
    assert payload["chat_template"] == INTERNVL_CHAT_TEMPLATE
    assert payload["stop"] == ["<|im_end|>", "</s>", "<|endoftext|>"]
    (message,) = payload["messages"]
    assert [p["type"] for p in message["content"]] == ["image_url", "text"]
    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    content = "<image>\n" + message["content"][1]["text"]  # vLLM's string content format
    rendered = environment.from_string(payload["chat_template"]).render(
        messages=[{"role": "user", "content": content}], add_generation_prompt=True
    )
    assert rendered == request.raw_prompt


def test_the_compact_prompt_names_partial_taxa_and_stays_an_option():
    recorder = Recorder()
    captioner = GenerativeCaptioner(
        recorder, prompts.FormatExamples({}), prompt=prompts.COMPACT_PROMPT
    )
    outcomes = captioner.caption_batch([_item(CARDINAL), _item(FLY, None, key="k2")])
    assert outcomes[0].caption == "A red bird, Cardinalis cardinalis.", "label removed"
    cardinal, fly = recorder.requests
    assert cardinal.instruction == prompts.COMPACT_INSTRUCTION and not cardinal.raw_template
    assert "Species: Cardinalis cardinalis (northern cardinal)" in cardinal.text
    assert "Species: a member of the family Cecidomyiidae (order Diptera)\n" in fly.text
    assert prompts.caption_prompt_sha256(prompts.COMPACT_PROMPT) != (
        prompts.caption_prompt_sha256(prompts.REFERENCE_PROMPT)
    )
    with pytest.raises(ValueError, match="prompt must be one of"):
        GenerativeCaptioner(recorder, prompts.FormatExamples({}), prompt="mine")


def test_upstream_format_examples_parquet_and_csv_give_the_same_classes(reference_data):
    from_parquet = prompts.FormatExamples.from_file(reference_data / PARQUET)
    from_csv = prompts.FormatExamples.from_file(reference_data / REAL)
    # 14 classes have no description and one says "\tN/A": all 15 get the fallback.
    assert len(from_parquet.by_class) == 347 - 15
    assert from_parquet.lookup("Geminibasidiomycetes") is None
    assert set(from_csv.by_class) <= set(from_parquet.by_class)
    # Matched on the class name lower-cased, as caption_gen's load_class_examples keys it.
    insecta = from_parquet.lookup("INSECTA")
    assert insecta == from_parquet.lookup("insecta") == from_parquet.lookup(" Insecta ")
    assert insecta.startswith("1.The Orchid Mantis, Hymenopus coronatus")
    assert from_parquet.lookup("Phycomycota") is None, "a missing description: the fallback"
    assert from_parquet.lookup("NoSuchClass") is None
    split = from_parquet.for_class("Insecta")
    assert len(split) == 3 and split[0].startswith("The Orchid Mantis")
    assert from_parquet.for_class("Phycomycota") == prompts.COMPACT_EXAMPLES


def test_format_example_files_that_cannot_be_used_are_named(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text('class,description\nAves,nan\nInsecta,\nMammalia,"1.One. 2.Two."\n')
    examples = prompts.FormatExamples.from_file(path)
    assert examples.lookup("Aves") is None and examples.lookup("Insecta") is None
    assert examples.for_class("Mammalia") == ("One.", "Two.")
    bad = tmp_path / "bad.csv"
    bad.write_text("klass,text\nA,B\n")
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) class, description"):
        prompts.FormatExamples.from_file(bad)
    with pytest.raises(ValueError, match=r"none\.parquet: no such format-examples file"):
        prompts.FormatExamples.from_file(tmp_path / "none.parquet")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"garbage\.parquet: not a readable"):
        prompts.FormatExamples.from_file(garbage)


def test_reference_is_cut_at_a_word_boundary():
    text = "word " * 300
    cut = prompts.cut_reference(text)
    assert len(cut) <= prompts.REFERENCE_CHARS + 2 and cut.endswith("…")
    assert not cut[:-2].endswith("wor")
    assert prompts.cut_reference("short text") == "short text"
    assert prompts.cut_reference(None) == ""


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


def test_template_captions_of_partial_taxa_keep_case_and_have_no_dangling_punctuation():
    template = TemplateCaptioner()
    assert template.caption(taxon_label(FLY), None, None) == (
        "A photo of a member of the family Cecidomyiidae (order Diptera)."
    )
    sifaka = template.caption("Propithecus deckenii", "Van der Decken's sifaka", None)
    assert sifaka == "A photo of Van der Decken's sifaka, Propithecus deckenii."
    assert template.caption("", None, "Red with stripes.") is None, "nothing to name"
    genus = SampleNames(scientific="Apis", taxonomic="Animalia Apis", ranks=(("genus", "Apis"),))
    assert taxon_label(genus) == "a member of the genus Apis"
    for caption in (sifaka, template.caption(taxon_label(FLY), None, "It is red and small.")):
        assert " ," not in caption and ", ." not in caption and not caption.endswith(" .")

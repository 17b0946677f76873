"""What the vLLM backend hands vLLM, checked against vLLM's documented API.

vLLM cannot be installed without CUDA, so ``vllm`` here is a recording double (a module
with ``LLM`` and ``SamplingParams``) whose signatures are vLLM's: ``LLM(model=...,
quantization=..., tensor_parallel_size=..., max_model_len=..., trust_remote_code=...,
dtype=..., enforce_eager=..., disable_log_stats=..., ...)``, ``LLM.generate(prompts,
sampling_params, use_tqdm)`` taking ``TextPrompt`` dicts ``{"prompt": str,
"multi_modal_data": {"image": PIL.Image.Image}}`` (vllm/inputs/data.py), and
``SamplingParams(temperature, top_p, max_tokens, seed, stop)``.
"""

import io
import sys
import types

import pytest
from PIL import Image

from biocap_assets.inference import prompts
from biocap_assets.inference.factory import InferenceConfig, make_backend
from biocap_assets.inference.tasks import CaptionInput, GenerativeCaptioner
from biocap_assets.taxonomy.names import SampleNames

# The keyword arguments of vllm.LLM / vllm.SamplingParams that the backend may use (as
# named in vLLM's EngineArgs and SamplingParams).
LLM_ARGUMENTS = {
    "model", "revision", "quantization", "tensor_parallel_size", "max_model_len",
    "trust_remote_code", "dtype", "enforce_eager", "disable_log_stats",
    "gpu_memory_utilization", "max_num_seqs", "enable_prefix_caching", "limit_mm_per_prompt",
}  # fmt: skip
SAMPLING_ARGUMENTS = {"temperature", "top_p", "max_tokens", "seed", "stop"}


@pytest.fixture
def vllm(monkeypatch):
    calls = {"llm": [], "generate": [], "chat": []}

    class SamplingParams:
        def __init__(self, **kwargs):
            assert set(kwargs) <= SAMPLING_ARGUMENTS, set(kwargs) - SAMPLING_ARGUMENTS
            self.kwargs = kwargs

    class Output:
        def __init__(self, text):
            self.outputs = [types.SimpleNamespace(text=text)]

    class LLM:
        def __init__(self, **kwargs):
            assert set(kwargs) <= LLM_ARGUMENTS, set(kwargs) - LLM_ARGUMENTS
            calls["llm"].append(kwargs)

        def generate(self, prompts, sampling_params=None, use_tqdm=True):
            calls["generate"].append((prompts, sampling_params))
            return [Output(" A crimson bird with a black mask. ") for _ in prompts]

        def chat(self, messages, sampling_params=None, use_tqdm=True):
            calls["chat"].append((messages, sampling_params))
            return [Output("A caption.") for _ in messages]

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return calls


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "JPEG")
    return out.getvalue()


def test_the_reference_prompt_goes_to_llm_generate_as_caption_gen_sends_it(vllm):
    config = InferenceConfig(
        backend="vllm",
        model="OpenGVLab/InternVL3-38B-AWQ",
        quantization="awq",
        max_model_len=2048,
        stop=("<|im_end|>", "</s>", "<|endoftext|>"),
        seed=3,
    )
    captioner = GenerativeCaptioner(make_backend(config), prompts.FormatExamples({}), seed=3)
    names = SampleNames("northern cardinal", "Cardinalis cardinalis", "Animalia ... cardinalis")
    outcomes = captioner.caption_batch([CaptionInput("k", _jpeg(), names, "Red. " * 200)])
    assert outcomes[0].caption == "A crimson bird with a black mask."
    (engine,) = vllm["llm"]
    assert engine["model"] == "OpenGVLab/InternVL3-38B-AWQ" and engine["quantization"] == "awq"
    assert engine["max_model_len"] == 2048 and engine["trust_remote_code"] is True
    assert engine["dtype"] == "auto" and engine["enforce_eager"] is False
    ((inputs, params),) = vllm["generate"]
    assert vllm["chat"] == [], "no chat template: the raw prompt caption_gen builds"
    (prompt,) = inputs
    assert set(prompt) == {"prompt", "multi_modal_data"}
    assert prompt["prompt"].startswith("<|im_start|>user\n<image>\nYou are a biologist")
    assert prompt["prompt"].endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert "Red. " * 120 in prompt["prompt"] and "Red. " * 121 not in prompt["prompt"]
    assert isinstance(prompt["multi_modal_data"]["image"], Image.Image)
    (sampling,) = params
    assert sampling.kwargs["stop"] == ["<|im_end|>", "</s>", "<|endoftext|>"]
    assert (sampling.kwargs["temperature"], sampling.kwargs["top_p"]) == (0.6, 0.8)
    assert sampling.kwargs["max_tokens"] == 50 and isinstance(sampling.kwargs["seed"], int)


def test_chat_requests_still_go_through_llm_chat(vllm):
    backend = make_backend(InferenceConfig(backend="vllm", model="some/text-model"))
    captioner = GenerativeCaptioner(
        backend, prompts.FormatExamples({}), prompt=prompts.COMPACT_PROMPT
    )
    captioner.caption_batch([CaptionInput("k", _jpeg(), SampleNames(scientific="A b"), None)])
    assert vllm["generate"] == [] and len(vllm["chat"]) == 1
    assert vllm["llm"][0]["quantization"] is None


def _argparse_defaults(path) -> dict[str, object]:
    """``--option: default`` of every ``parser.add_argument`` in a script, read from its
    syntax tree (caption_gen/main.py imports vLLM, which cannot be installed here)."""
    import ast

    defaults = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            keywords = {k.arg: k.value for k in node.keywords}
            if node.args and "default" in keywords:
                defaults[node.args[0].value] = ast.literal_eval(keywords["default"])
    return defaults


def test_the_caption_engine_defaults_are_caption_gens():
    """The caption model, its quantization and context length, as caption_gen/main.py's
    defaults; with a checkout of the reference, read from that script itself."""
    import os
    from pathlib import Path

    from biocap_assets.inference.base import CAPTION_ENGINE
    from biocap_assets.inference.vllm_backend import VLLMConfig

    assert CAPTION_ENGINE == {
        "model": "OpenGVLab/InternVL3-38B-AWQ",
        "quantization": "awq",
        "max_model_len": 2048,
    }
    default = VLLMConfig()
    assert (default.model, default.quantization, default.max_model_len) == tuple(
        CAPTION_ENGINE.values()
    )
    root = os.environ.get("BIOCAP_REFERENCE_REPO")
    if not root:
        return
    theirs = _argparse_defaults(Path(root) / "caption_gen" / "main.py")
    assert theirs["--model_name"] == CAPTION_ENGINE["model"]
    assert theirs["--quantization"] == CAPTION_ENGINE["quantization"]
    assert theirs["--max_model_len"] == CAPTION_ENGINE["max_model_len"]

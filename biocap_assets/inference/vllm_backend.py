"""vLLM's offline engine in the worker process (``pip install 'biocap[gpu]'``).

vLLM cannot be installed on a machine without CUDA, so it is imported only when
this backend is built. One call takes a whole batch (a shard's worth) so the engine
schedules continuously; every request carries its own seed. Raw requests (BioCAP's
caption prompt) go through ``LLM.generate`` as ``{"prompt": str, "multi_modal_data":
{"image": PIL.Image}}``, as ``caption_gen/caption/generator.py`` sends them; vLLM's
InternVL processor replaces the literal ``<image>`` with the image tokens. Chat requests
go through ``LLM.chat``, where the model's chat template applies.

Engine defaults are ``caption_gen/main.py``'s: InternVL3-38B-AWQ, ``quantization="awq"``,
``max_model_len=2048``, ``dtype="auto"``, ``trust_remote_code``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from biocap_assets.common.model_cache import require_cached
from biocap_assets.inference.base import (
    CAPTION_ENGINE,
    Generation,
    GenerationRequest,
    SamplingConfig,
    chat_messages,
)


@dataclass(frozen=True)
class VLLMConfig:
    model: str = CAPTION_ENGINE["model"]
    revision: str = ""  # a branch, tag or commit of the model; "": the hub's default (main)
    quantization: str | None = CAPTION_ENGINE["quantization"]
    tensor_parallel_size: int = 1
    max_model_len: int = CAPTION_ENGINE["max_model_len"]
    dtype: str = "auto"
    # Engine tuning, not in caption_gen (which keeps vLLM's defaults for these): they
    # change throughput and memory, not what a request generates.
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int = 256
    trust_remote_code: bool = True  # InternVL ships its own model code
    enable_prefix_caching: bool = True


def engine_arguments(config: VLLMConfig) -> dict:
    """Keyword arguments of ``vllm.LLM`` (caption_gen/main.py's, and our engine tuning)."""
    quantization = config.quantization
    return {
        "model": config.model,
        **({"revision": config.revision} if config.revision else {}),
        "quantization": None if quantization in (None, "", "none") else quantization,
        "tensor_parallel_size": config.tensor_parallel_size,
        "max_model_len": config.max_model_len,
        "trust_remote_code": config.trust_remote_code,
        "dtype": config.dtype,
        "enforce_eager": False,
        "disable_log_stats": True,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_num_seqs": config.max_num_seqs,
        "enable_prefix_caching": config.enable_prefix_caching,
        "limit_mm_per_prompt": {"image": 1},
    }


def sampling_arguments(sampling: SamplingConfig, request: GenerationRequest) -> dict:
    """Keyword arguments of ``vllm.SamplingParams`` for one request."""
    arguments = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": request.seed,
    }
    if sampling.stop:
        arguments["stop"] = list(sampling.stop)
    return arguments


def raw_prompt_input(request: GenerationRequest) -> dict:
    """vLLM's TextPrompt: the whole prompt string and the decoded image."""
    prompt: dict = {"prompt": request.raw_prompt}
    if request.image is not None:
        from PIL import Image

        prompt["multi_modal_data"] = {"image": Image.open(io.BytesIO(request.image))}
    return prompt


class VLLMBackend:
    name = "vllm"

    def __init__(self, config: VLLMConfig, sampling: SamplingConfig):
        # offline GPU pods: say which model is missing, before the engine starts
        require_cached(config.model, config.revision)
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:  # pragma: no cover - needs a GPU machine
            raise RuntimeError(
                "the vllm backend needs vLLM: install biocap with the [gpu] extra on a CUDA "
                "machine, or use the openai backend against a `vllm serve` endpoint"
            ) from exc
        self.model = config.model
        self._sampling = sampling
        self._params_cls = SamplingParams
        self._llm = LLM(**engine_arguments(config))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if not requests:
            return []
        params = [self._params_cls(**sampling_arguments(self._sampling, r)) for r in requests]
        raw = [r.raw_template != "" for r in requests]
        if any(raw) and not all(raw):
            raise ValueError("a batch mixes raw prompts and chat turns")
        if all(raw):
            outputs = self._llm.generate(
                [raw_prompt_input(r) for r in requests], sampling_params=params, use_tqdm=False
            )
        else:
            outputs = self._llm.chat(
                [chat_messages(r) for r in requests], sampling_params=params, use_tqdm=False
            )
        results = []
        for request, output in zip(requests, outputs, strict=True):
            if not output.outputs:
                results.append(Generation(request.id, None, "vLLM returned no completion"))
            else:
                results.append(Generation(request.id, output.outputs[0].text.strip()))
        return results

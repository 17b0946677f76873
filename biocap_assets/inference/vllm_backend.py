"""vLLM's offline engine in the worker process (``pip install 'biocap[gpu]'``).

vLLM cannot be installed on a machine without CUDA, so it is imported only when
this backend is built. One ``LLM.chat`` call takes a whole batch (a shard's
worth) so the engine schedules continuously; every request carries its own
seed; the model's chat template is applied by vLLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from biocap_assets.inference.base import (
    Generation,
    GenerationRequest,
    SamplingConfig,
    chat_messages,
)


@dataclass(frozen=True)
class VLLMConfig:
    model: str = "OpenGVLab/InternVL3-38B"
    tensor_parallel_size: int = 1
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int = 256
    trust_remote_code: bool = True  # InternVL ships its own model code
    enable_prefix_caching: bool = True


class VLLMBackend:
    name = "vllm"

    def __init__(self, config: VLLMConfig, sampling: SamplingConfig):
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
        self._llm = LLM(
            model=config.model,
            tensor_parallel_size=config.tensor_parallel_size,
            max_model_len=config.max_model_len,
            gpu_memory_utilization=config.gpu_memory_utilization,
            max_num_seqs=config.max_num_seqs,
            trust_remote_code=config.trust_remote_code,
            enable_prefix_caching=config.enable_prefix_caching,
            limit_mm_per_prompt={"image": 1},
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if not requests:
            return []
        params = [
            self._params_cls(
                temperature=self._sampling.temperature,
                top_p=self._sampling.top_p,
                max_tokens=self._sampling.max_tokens,
                seed=r.seed,
            )
            for r in requests
        ]
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

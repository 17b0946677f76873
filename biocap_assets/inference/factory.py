"""Build the backend a config names; configs travel to workers as plain dicts (Pipes extras)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

from biocap_assets.inference.base import Backend, SamplingConfig

BACKENDS = ("cpu", "vllm", "openai")
# What each InferenceConfig field means (the Dagster configs of the assets show these).
FIELD_DOCS = {
    "model": "the model name (Hugging Face id for vllm, served name for openai)",
    "revision": "vllm: the model's branch, tag or commit on the hub ('' for main); "
    "model_weights must have cached the same one",
    "base_url": "openai: the endpoint, e.g. http://vllm:8000/v1",
    "api_key_env": "openai: the variable that holds the key",
    "concurrency": "openai: requests in flight",
    "timeout": "openai: seconds per request",
    "retries": "openai: retries of a failed request",
    "tensor_parallel_size": "vllm: GPUs per engine",
    "max_model_len": "vllm: context length",
    "gpu_memory_utilization": "vllm: share of GPU memory the engine may take",
    "quantization": "vllm: quantization of the weights ('' for none), e.g. awq",
    "temperature": "sampling temperature",
    "top_p": "nucleus sampling",
    "max_tokens": "tokens generated at most",
    "seed": "base seed; each request gets its own, derived from it and the item",
    "stop": "stop strings (empty: the prompt's own)",
}


@dataclass(frozen=True)
class InferenceConfig:
    backend: str = "cpu"
    model: str = ""
    revision: str = ""
    # openai: the endpoint and the name of the variable holding its key
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 120.0
    retries: int = 3
    # vllm
    tensor_parallel_size: int = 1
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.9
    quantization: str = ""
    # sampling (upstream captioning defaults)
    temperature: float = 0.6
    top_p: float = 0.8
    max_tokens: int = 50
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("the openai backend needs base_url (e.g. http://vllm:8000/v1)")
        if self.backend in ("openai", "vllm") and not self.model:
            raise ValueError(f"the {self.backend} backend needs a model name")

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_p, self.max_tokens, tuple(self.stop))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> InferenceConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if "stop" in values:
            values["stop"] = tuple(values["stop"] or ())
        return cls(**values)


def make_backend(config: InferenceConfig) -> Backend:
    if config.backend == "openai":
        from biocap_assets.inference.openai_backend import OpenAIBackend, OpenAIConfig

        return OpenAIBackend(
            OpenAIConfig(
                base_url=config.base_url,
                model=config.model,
                api_key=os.environ.get(config.api_key_env, ""),
                concurrency=config.concurrency,
                timeout=config.timeout,
                retries=config.retries,
            ),
            config.sampling,
        )
    if config.backend == "vllm":
        from biocap_assets.inference.vllm_backend import VLLMBackend, VLLMConfig

        return VLLMBackend(
            VLLMConfig(
                model=config.model,
                revision=config.revision,
                quantization=config.quantization or None,
                tensor_parallel_size=config.tensor_parallel_size,
                max_model_len=config.max_model_len,
                gpu_memory_utilization=config.gpu_memory_utilization,
            ),
            config.sampling,
        )
    raise ValueError(f"backend {config.backend!r} has no generative model")

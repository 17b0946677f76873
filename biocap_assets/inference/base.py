"""The one interface every generation backend implements.

A request is either a chat turn (``raw_template`` empty): a fixed ``instruction``
(identical across a batch, so vLLM's prefix cache reuses it), then an optional image,
then the per-item ``text``, formatted by the model's own chat template; or a raw prompt
(``raw_template="internvl"``): ``text`` placed in the exact string BioCAP's
``caption_gen`` builds for InternVL by hand, image placeholder first and no system turn.
Backends return one :class:`Generation` per request, in order; a failed request carries
its error instead of text, it never fails the batch.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# caption_gen/main.py: SamplingParams(..., stop=[...])
INTERNVL_STOP = ("<|im_end|>", "</s>", "<|endoftext|>")
# The raw prompt caption_gen/caption/prompts.py builds by hand for InternVL.
INTERNVL_RAW = "<|im_start|>user\n<image>\n{text}<|im_end|>\n<|im_start|>assistant\n"
# A chat template that renders a user turn exactly as INTERNVL_RAW does, for servers that
# only take chat requests: vLLM puts the image placeholder ("<image>" for InternVL) and
# "\n" before the text of a message whose content is passed as a string, so the rendered
# prompt is INTERNVL_RAW's, with no system turn (InternVL's own template may add one).
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
RAW_TEMPLATES = {"internvl": INTERNVL_RAW}


# The engine caption_gen/main.py starts: the caption model's defaults, for the captions
# asset and the vLLM backend alike.
CAPTION_ENGINE = {
    "model": "OpenGVLab/InternVL3-38B-AWQ",
    "quantization": "awq",
    "max_model_len": 2048,
}


@dataclass(frozen=True)
class SamplingConfig:
    """Upstream BioCAP captioning ran InternVL3-38B-AWQ with these settings."""

    temperature: float = 0.6
    top_p: float = 0.8
    max_tokens: int = 50
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    id: str
    instruction: str
    text: str
    image: bytes | None = None
    image_mime: str = "image/jpeg"
    seed: int | None = None
    raw_template: str = ""  # "" (a chat turn) or a key of RAW_TEMPLATES

    @property
    def raw_prompt(self) -> str:
        """The whole prompt string of a raw request."""
        return RAW_TEMPLATES[self.raw_template].format(text=self.text)


@dataclass(frozen=True)
class Generation:
    id: str
    text: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class Backend(Protocol):
    name: str
    model: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]: ...


def data_url(image: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def chat_messages(request: GenerationRequest) -> list[dict]:
    """OpenAI-style chat content: instruction first, then the image, then the item's text.

    A raw request becomes one user turn with the image, then its text (to be rendered
    with ``INTERNVL_CHAT_TEMPLATE``)."""
    if request.raw_template:
        parts: list[dict] = []
        if request.image is not None:
            parts.append(
                {
                    "type": "image_url",
                    "image_url": {"url": data_url(request.image, request.image_mime)},
                }
            )
        parts.append({"type": "text", "text": request.text})
        return [{"role": "user", "content": parts}]
    content: list[dict] = [{"type": "text", "text": request.instruction}]
    if request.image is not None:
        content.append(
            {"type": "image_url", "image_url": {"url": data_url(request.image, request.image_mime)}}
        )
    content.append({"type": "text", "text": request.text})
    return [{"role": "user", "content": content}]


def request_seed(base_seed: int, item_id: str) -> int:
    """A per-request seed derived from the item, so a rerun samples the same tokens."""
    import zlib

    return (base_seed * 1_000_003 + zlib.crc32(item_id.encode())) % (2**31 - 1)

"""The one interface every generation backend implements.

A request is a chat turn: a fixed ``instruction`` (identical across a batch, so
vLLM's prefix cache reuses it), then an optional image, then the per-item
``text``. Backends return one :class:`Generation` per request, in order; a
failed request carries its error instead of text, it never fails the batch.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingConfig:
    """Upstream BioCAP captioning ran InternVL3-38B with these settings."""

    temperature: float = 0.6
    top_p: float = 0.8
    max_tokens: int = 50


@dataclass(frozen=True)
class GenerationRequest:
    id: str
    instruction: str
    text: str
    image: bytes | None = None
    image_mime: str = "image/jpeg"
    seed: int | None = None


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
    """OpenAI-style chat content: instruction first, then the image, then the item's text."""
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

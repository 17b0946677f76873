"""The BioCAP model: an open_clip CLIP whose vision tower has a second projection.

Taxonomic texts (sci, com, taxon, ...) and captions describe an image in
different ways, so BioCAP gives the image two projections into the shared text
space: ``visual.proj`` (open_clip's, for taxonomic labels) and
``visual.caption_proj`` (for captions, initialised as a copy of ``proj``), each
with its own logit scale (and bias, where the model has one). The text tower is
shared.

The caption head lives on the open_clip module itself, under the reference fork's
names (``visual.caption_proj``, ``logit_scale_caption``, ``logit_bias_caption``), so
``model.clip.state_dict()`` is exactly what the fork's ``open_clip`` loads with
``--dual-projector``, and the same dict minus those three keys is a stock open_clip
CLIP. ``DualProjectionCLIP`` only adds the forward pass that picks a head.
"""

from __future__ import annotations

import logging
from pathlib import Path

import open_clip
import torch
from torch import nn

CONFIG_DIR = Path(__file__).parent / "model_configs"
CAPTION = "caption"
TAXONOMIC = "taxonomic"
HEADS = (TAXONOMIC, CAPTION)
# The caption head's parameters, as the reference fork names them in a state dict.
CAPTION_HEAD_KEYS = ("visual.caption_proj", "logit_scale_caption", "logit_bias_caption")


def register_model_configs() -> None:
    """Make ``biocap-tiny`` and ``biocap-small`` known to open_clip's factory."""
    if "biocap-tiny" not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


def add_caption_head(clip: nn.Module) -> nn.Module:
    """Give an open_clip CLIP the caption head, copied from its taxonomic head."""
    visual = getattr(clip, "visual", None)
    if not isinstance(getattr(visual, "proj", None), nn.Parameter):
        raise ValueError(
            "BioCAP's caption projector needs a ViT vision tower with a `proj` "
            f"matrix; {type(visual).__name__} has none"
        )
    if not isinstance(getattr(visual, "caption_proj", None), nn.Parameter):
        visual.caption_proj = nn.Parameter(visual.proj.detach().clone())
        clip.logit_scale_caption = nn.Parameter(clip.logit_scale.detach().clone())
        bias = getattr(clip, "logit_bias", None)
        clip.logit_bias_caption = nn.Parameter(bias.detach().clone()) if bias is not None else None
    return clip


class DualProjectionCLIP(nn.Module):
    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = add_caption_head(clip)

    @property
    def caption_proj(self) -> nn.Parameter:
        return self.clip.visual.caption_proj

    @property
    def caption_logit_scale(self) -> nn.Parameter:
        return self.clip.logit_scale_caption

    def pooled_image(self, images: torch.Tensor) -> torch.Tensor:
        """The vision tower's pooled features, before either projection."""
        visual = self.clip.visual
        x = visual._embeds(images)
        x = visual.transformer(x)
        pooled, _ = visual._pool(x)
        return pooled

    def encode_image(
        self, images: torch.Tensor, projector: str = TAXONOMIC, normalize: bool = True
    ) -> torch.Tensor:
        if projector not in HEADS:
            raise ValueError(f"projector must be one of {HEADS}, got {projector!r}")
        pooled = self.pooled_image(images)
        proj = self.caption_proj if projector == CAPTION else self.clip.visual.proj
        features = pooled @ proj
        return nn.functional.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.clip.encode_text(tokens, normalize=normalize)

    def logit_scale_for(self, projector: str) -> torch.Tensor:
        scale = self.caption_logit_scale if projector == CAPTION else self.clip.logit_scale
        return scale.exp()

    def logit_bias_for(self, projector: str) -> torch.Tensor | None:
        if projector == CAPTION:
            return getattr(self.clip, "logit_bias_caption", None)
        return getattr(self.clip, "logit_bias", None)

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor, projector: str
    ) -> dict[str, torch.Tensor | None]:
        return {
            "image_features": self.encode_image(images, projector),
            "text_features": self.encode_text(tokens),
            "logit_scale": self.logit_scale_for(projector),
            "logit_bias": self.logit_bias_for(projector),
        }

    @torch.no_grad()
    def clamp_logit_scales(self, max_log: float = 4.6052) -> None:
        """Both scales clamped like open_clip's training does (at ln 100)."""
        self.clip.logit_scale.clamp_(0, max_log)
        self.caption_logit_scale.clamp_(0, max_log)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.clip.set_grad_checkpointing(enable)


def model_config(name: str) -> dict:
    """The open_clip architecture config of ``name`` (what ``open_clip_config.json`` holds)."""
    register_model_configs()
    config = open_clip.get_model_config(name)
    if config is None:
        raise ValueError(f"open_clip knows no model {name!r}")
    return config


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def create_model(
    name: str,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
):
    """(model, train transform, eval transform, tokenizer) from open_clip's factory.

    ``pretrained`` goes to open_clip as is: a tag such as ``openai`` (weights from open_clip's
    own download and cache) or a local checkpoint file. ``proj`` is copied into
    ``caption_proj`` after loading.
    """
    register_model_configs()
    # without weights open_clip warns on the root logger; the worker reports the initial
    # weights itself, so that one notice is dropped
    quiet = _DropMessage("No pretrained weights loaded")
    logging.getLogger().addFilter(quiet)
    try:
        clip, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
            name, pretrained=pretrained or None, device=device, precision=precision
        )
    finally:
        logging.getLogger().removeFilter(quiet)
    tokenizer = open_clip.get_tokenizer(name)
    return DualProjectionCLIP(clip).to(device), preprocess_train, preprocess_val, tokenizer

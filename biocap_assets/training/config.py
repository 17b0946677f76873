"""Training configuration as data, with the upstream recipe and the demo preset."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from biocap_assets.training.text_mix import UNIFORM


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are BioCAP's published recipe (``slurm/train.sh``: ViT-B/16 fine-tuned from
    OpenAI CLIP, 2 nodes x 4 GPUs)."""

    model: str = "ViT-B-16"
    # An open_clip pretrained tag (weights through open_clip's own download and cache), or
    # a local checkpoint file; "" or None: random initialisation.
    pretrained: str | None = "openai"
    batch_size: int = 4096  # per device
    lr: float = 1e-4
    warmup: int = 500
    epochs: int = 50
    samples_per_epoch: int = 0  # 0: the samples in the training shards
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    weight_decay: float = 0.2
    precision: str = "bf16"  # autocast on GPU; CPU runs fp32
    grad_checkpointing: bool = True
    local_loss: bool = True
    gather_with_grad: bool = True
    accum_freq: int = 1
    text_weights: dict[str, float] = field(default_factory=lambda: dict(UNIFORM))
    seed: int = 0
    workers: int = 4
    shuffle_buffer: int = 5000
    log_every: int = 50
    val_batch_size: int = 256
    # epoch checkpoints (.pt) kept: the newest K, the final one among them; 0 keeps all
    keep_checkpoints: int = 2
    # Speed only, off by default where they change the numbers (bench/train.py --gpu
    # measures each): torch.compile of the model, PyTorch's fused AdamW kernel, images in
    # channels-last memory format.
    compile: bool = False
    fused_adamw: bool = False
    channels_last: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> str:
        """A short hash of what decides the trained weights. Not in it: ``epochs`` (a longer
        run resumes a shorter one) and settings that only change speed or logging."""
        import hashlib
        import json

        ignored = {
            "epochs",
            "workers",
            "log_every",
            "val_batch_size",
            "keep_checkpoints",
            "grad_checkpointing",
            "compile",
            "fused_adamw",
            "channels_last",
        }
        fields_ = {k: v for k, v in self.as_dict().items() if k not in ignored}
        return hashlib.sha256(json.dumps(fields_, sort_keys=True).encode()).hexdigest()[:8]

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**data)


UPSTREAM = TrainConfig()
# A few minutes on 2 CPU cores, enough to beat chance clearly on the demo world.
DEMO = replace(
    UPSTREAM,
    model="biocap-tiny",
    pretrained=None,
    batch_size=32,
    lr=1e-3,
    warmup=20,
    epochs=8,
    precision="fp32",
    grad_checkpointing=False,
    local_loss=False,
    gather_with_grad=False,
    workers=0,
    shuffle_buffer=500,
    log_every=10,
    val_batch_size=64,
)
PRESETS = {"upstream": UPSTREAM, "demo": DEMO}

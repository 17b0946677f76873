"""The BioCAP training loop: DDP under torchrun, one text type per step, resumable.

Run one process per device (``torchrun --nproc_per_node=N -m biocap_assets.workers.train``);
gloo on CPU, NCCL on GPU. Each step draws one text type for the global batch
(``text_mix``), uses the caption projector for captions and the taxonomic one
otherwise, and applies open_clip's ``ClipLoss`` (local loss with gather-with-grad
as in the upstream recipe). Gradient accumulation (``accum_freq``) enlarges the
contrastive batch as open_clip_train's ``--accum-freq`` does: the features of every
micro-batch are computed without gradients first, then each micro-batch is computed
again with gradients and contrasted against all the others' cached features, so the
loss is the loss of the whole accumulated batch.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from open_clip import ClipLoss
from open_clip_train.precision import get_autocast
from open_clip_train.scheduler import cosine_lr
from torch.nn.parallel import DistributedDataParallel
from upath import UPath

from biocap_assets.progress import format_seconds
from biocap_assets.training import checkpoint
from biocap_assets.training.config import TrainConfig
from biocap_assets.training.data import eval_pipeline, loader, train_pipeline
from biocap_assets.training.model import DualProjectionCLIP, create_model, model_config
from biocap_assets.training.text_mix import TEXT_TYPES, projector_for, text_type_for_step


@dataclass
class TrainJob:
    train_urls: list[str]
    val_urls: list[str]
    out_dir: str  # checkpoints/<run>, under the storage root
    data_version: str = ""
    train_samples: int = 0
    rank_report: str = ""  # a folder: each rank writes what it saw (debugging DDP runs)


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Dist(rank, world_size, local_rank, device)


def group_names(model: torch.nn.Module) -> list[list[str]]:
    """Names of the trainable parameters without and with weight decay, in model order.

    As open_clip_train: no decay on biases, norms, logit scales and other vectors.
    """

    def exclude(name: str, p: torch.Tensor) -> bool:
        return p.ndim < 2 or any(k in name for k in ("bn", "ln", "bias", "logit_scale"))

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [[n for n, p in named if exclude(n, p)], [n for n, p in named if not exclude(n, p)]]


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on weight matrices only."""
    params = dict(model.named_parameters())
    no_decay, decay = group_names(model)
    return [
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
        {"params": [params[n] for n in decay], "weight_decay": weight_decay},
    ]


def speed_options(model: DualProjectionCLIP, config: TrainConfig):
    """The model as the config's speed options want it, and its AdamW optimizer."""
    if config.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        param_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        **({"fused": True} if config.fused_adamw else {}),
    )
    if config.compile:
        # each tower compiled in place (its forward is what encode_image / encode_text
        # call): the modules, and their state_dict keys, stay as they are
        model.clip.visual.compile()
        model.clip.transformer.compile()
    return model, optimizer


# our precision names -> open_clip_train's (``--precision``)
_PRECISION = {"bf16": "amp_bf16", "fp16": "amp", "fp32": "fp32"}


def autocast_for(config: TrainConfig, device: torch.device) -> Callable:
    """open_clip_train's autocast for the configured precision; CPU runs fp32."""
    if device.type != "cuda":
        return contextlib.nullcontext
    return get_autocast(_PRECISION.get(config.precision, config.precision), "cuda")


@torch.no_grad()
def validate(
    model: DualProjectionCLIP,
    urls: list[str],
    transform,
    tokenizer,
    config: TrainConfig,
    device: torch.device,
) -> dict[str, float]:
    """Mean contrastive loss on the validation shards: taxonomic (taxon_com) and caption."""
    if not urls:
        return {}
    loss_fn = ClipLoss()
    totals = {"val_tax_loss": [0.0, 0], "val_caption_loss": [0.0, 0]}
    model.eval()
    for images, tokens in loader(
        eval_pipeline(urls, transform, tokenizer, config.val_batch_size), 0
    ):
        if images.shape[0] < 2:
            continue
        images = images.to(device)
        for name, text_type in (("val_tax_loss", "taxon_com"), ("val_caption_loss", "caption")):
            out = model(
                images, tokens[:, TEXT_TYPES.index(text_type)].to(device), projector_for(text_type)
            )
            loss = loss_fn(
                out["image_features"], out["text_features"], out["logit_scale"], out["logit_bias"]
            )
            totals[name][0] += loss.item() * images.shape[0]
            totals[name][1] += images.shape[0]
    model.train()
    return {k: round(v / n, 5) for k, (v, n) in totals.items() if n}


def _write_rank_report(
    folder: str, env: Dist, model: torch.nn.Module, step: int, text_types: list[str]
) -> None:
    """Per-rank facts (step, text types, a parameter checksum) to compare ranks."""
    import json

    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    target = UPath(folder) / f"rank_{env.rank}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        json.dumps(
            {"rank": env.rank, "step": step, "text_types": text_types, "param_checksum": checksum}
        )
    )


def _finished(summary: dict, path: UPath, out_dir: UPath, config: TrainConfig, env: Dist) -> dict:
    """The result of a run that was already complete (nothing trained now)."""
    keys = ("train_loss", "val_tax_loss", "val_caption_loss", "samples_seen")
    return {
        "run_dir": str(out_dir),
        "epochs": config.epochs,
        "steps": summary["step"],
        **{k: summary[k] for k in keys if k in summary},
        "samples_per_second": 0.0,
        "samples_per_second_per_device": 0.0,
        "wall_seconds": 0.0,
        "resumed_from_epoch": summary["epochs_done"],
        "world_size": env.world_size,
        "model": config.model,
        "checkpoint": str(path),
        "export": str(out_dir / checkpoint.EXPORT_DIR),
        "checkpoints_kept": checkpoint.complete_epochs(out_dir),
    }


def _saved_groups(names: list[str], clip: torch.nn.Module) -> list[list[str]]:
    """The optimizer groups an earlier-layout checkpoint was saved with, by name."""
    params = dict(clip.named_parameters())
    order = [n for n in names if n in params and params[n].requires_grad]
    no_decay = set(group_names(clip)[0])
    return [[n for n in order if n in no_decay], [n for n in order if n not in no_decay]]


def resume(model: DualProjectionCLIP, optimizer: torch.optim.Optimizer, path: UPath, device) -> int:
    """Load a checkpoint (either layout) into ``model`` and ``optimizer``; its step."""
    state = checkpoint.load_state(path, device)
    model.clip.load_state_dict(state["state_dict"])
    optimizer_state = state["optimizer"]
    if "optimizer_param_names" in state:
        optimizer_state = checkpoint.reorder_optimizer_state(
            optimizer_state,
            _saved_groups(state["optimizer_param_names"], model.clip),
            group_names(model.clip),
        )
    optimizer.load_state_dict(optimizer_state)
    return int(state.get("step", 0))


def contrastive_step(
    ddp: torch.nn.Module,
    loss_fn: ClipLoss,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor]],
    projector: str,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> float:
    """Gradients of one step over ``micro_batches`` (accumulated into ``.grad``); its loss.

    One micro-batch: a plain forward and backward. Several: open_clip_train's
    ``--accum-freq``. Features of every micro-batch are cached without gradients; then
    each micro-batch is run again with gradients and its features spliced among the
    cached ones, so every backward is of the loss over the whole accumulated batch. As
    there, the logit scale (and bias) is live in every one of these passes, so its
    gradient is ``len(micro_batches)`` times the full-batch one; all other parameters get
    exactly the full-batch gradient.
    """

    def loss_of(out: dict) -> torch.Tensor:
        return loss_fn(
            out["image_features"], out["text_features"], out["logit_scale"], out["logit_bias"]
        )

    sync_context = getattr(ddp, "no_sync", None)
    if len(micro_batches) == 1:
        images, texts = micro_batches[0]
        with autocast():
            loss = loss_of(ddp(images, texts, projector))
        loss.backward()
        return loss.item()
    cached: dict[str, list[torch.Tensor]] = {"image_features": [], "text_features": []}
    with torch.no_grad(), autocast():
        for images, texts in micro_batches:
            out = ddp(images, texts, projector)
            for key in cached:
                cached[key].append(out[key])
    loss_value = float("nan")
    for j, (images, texts) in enumerate(micro_batches):
        last = j == len(micro_batches) - 1
        context = contextlib.nullcontext() if last or sync_context is None else sync_context()
        with context:
            with autocast():
                out = ddp(images, texts, projector)
                spliced = {
                    key: torch.cat(chunks[:j] + [out[key]] + chunks[j + 1 :])
                    for key, chunks in cached.items()
                }
                loss = loss_of({**out, **spliced})
            loss.backward()
        loss_value = loss.item()
    return loss_value


@dataclass
class Run:
    """A training run in progress: what every epoch needs."""

    config: TrainConfig
    job: TrainJob
    env: Dist
    model: DualProjectionCLIP
    optimizer: torch.optim.Optimizer
    preprocess_train: Callable
    preprocess_val: Callable
    tokenizer: Callable
    out_dir: UPath
    steps_per_epoch: int
    total_steps: int
    global_batch: int
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    text_types_seen: list[str] = field(default_factory=list)

    @property
    def steps_done_before(self) -> int:
        return self.start_epoch * self.steps_per_epoch


def train_one_epoch(
    run: Run, epoch: int, ddp, loss_fn, batches, schedule, started: float, log
) -> float:
    """The steps of one epoch; the last step's loss. As open_clip_train's
    ``train_one_epoch``: the schedule sets the learning rate of each step."""
    config, env, model, optimizer = run.config, run.env, run.model, run.optimizer
    window_start, window_samples = time.perf_counter(), 0
    autocast = autocast_for(config, env.device)
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    step_loss = float("nan")
    for i in range(run.steps_per_epoch):
        step = epoch * run.steps_per_epoch + i
        lr = schedule(step)
        text_type = text_type_for_step(step, config.seed, config.text_weights)
        run.text_types_seen.append(text_type)
        column, projector = TEXT_TYPES.index(text_type), projector_for(text_type)
        optimizer.zero_grad(set_to_none=True)
        micro_batches = []
        for _ in range(config.accum_freq):
            images, tokens = next(batches)
            micro_batches.append(
                (
                    images.to(env.device, non_blocking=True, memory_format=memory_format),
                    tokens[:, column].to(env.device, non_blocking=True),
                )
            )
            window_samples += images.shape[0]
        step_loss = contrastive_step(ddp, loss_fn, micro_batches, projector, autocast)
        optimizer.step()
        model.clamp_logit_scales()
        done = step + 1
        if env.is_main and done == run.steps_done_before + 1:
            log(f"first step done {time.perf_counter() - started:.2f} s after the loop started")
        if env.is_main and (done % config.log_every == 0 or done == run.total_steps):
            now = time.perf_counter()
            elapsed = now - window_start
            rate = window_samples / elapsed if elapsed else 0.0
            window_start, window_samples = now, 0  # the next window starts here
            run.history.append(
                {
                    "step": done,
                    "epoch": epoch + 1,
                    "loss": round(step_loss, 5),
                    "lr": lr,
                    "text_type": text_type,
                    "samples_per_second_per_device": round(rate, 2),
                }
            )
            run_elapsed = time.perf_counter() - started
            eta = (run.total_steps - done) * run_elapsed / max(1, done - run.steps_done_before)
            log(
                f"step {done}/{run.total_steps} ({100 * done / run.total_steps:.0f}%) epoch "
                f"{epoch + 1} loss {step_loss:.4f} lr {lr:.2e} text {text_type} "
                f"{rate:.1f} samples/s/device (this window), ETA {format_seconds(eta)}"
            )
    return step_loss


def end_epoch(run: Run, epoch: int, train_loss: float, log, report) -> dict[str, float]:
    """On rank 0: validate, save the checkpoint (open_clip_train's layout), and after the
    last epoch the export for stock open_clip. The validation losses."""
    config, model = run.config, run.model
    val = validate(
        model, run.job.val_urls, run.preprocess_val, run.tokenizer, config, run.env.device
    )
    run.history.append({"step": (epoch + 1) * run.steps_per_epoch, "epoch": epoch + 1, **val})
    summary = {
        "config": config.as_dict(),
        "step": (epoch + 1) * run.steps_per_epoch,
        "epochs_done": epoch + 1,
        "samples_seen": (epoch + 1) * run.steps_per_epoch * run.global_batch,
        "train_loss": train_loss,
        **val,
        "data_version": run.job.data_version,
        "world_size": run.env.world_size,
        "history": run.history,
    }
    path = checkpoint.save(
        run.out_dir,
        epoch + 1,
        {
            # open_clip_train's layout (its main.py writes these four keys)
            "epoch": epoch + 1,
            "name": run.out_dir.name,
            "state_dict": model.clip.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "step": summary["step"],
            "model_name": config.model,
        },
        summary,
    )
    kept = checkpoint.prune(run.out_dir, config.keep_checkpoints)
    if epoch + 1 == config.epochs:
        export = checkpoint.export_for_hub(model.clip, model_config(config.model), run.out_dir)
        log(f"exported the final model for open_clip ('local-dir:{export}')")
    log(
        f"epoch {epoch + 1}/{config.epochs} done: train loss {train_loss:.4f} {val} -> {path} "
        f"(weights kept: epochs {', '.join(map(str, kept))})"
    )
    if report is not None:
        report({"epoch": epoch + 1, "step": summary["step"], **val})
    return val


def prepare(config: TrainConfig, job: TrainJob, log) -> Run | dict:
    """The model, optimizer and schedule of a run, resumed from its newest checkpoint;
    or, when the run already holds its last epoch, the result of that run."""
    env = init_distributed()
    torch.manual_seed(config.seed + env.rank)
    model, preprocess_train, preprocess_val, tokenizer = create_model(
        config.model, config.pretrained, env.device
    )
    model, optimizer = speed_options(model, config)
    out_dir = UPath(job.out_dir)
    samples_per_epoch = config.samples_per_epoch or job.train_samples
    global_batch = config.batch_size * env.world_size * config.accum_freq
    steps_per_epoch = max(1, samples_per_epoch // global_batch)
    run = Run(
        config, job, env, model, optimizer, preprocess_train, preprocess_val, tokenizer,
        out_dir, steps_per_epoch, steps_per_epoch * config.epochs, global_batch,
    )  # fmt: skip
    found = checkpoint.latest(out_dir)
    if found is not None and found[0] >= config.epochs:
        epoch, path, summary = found
        if env.is_main:
            log(f"{out_dir} already holds the final epoch {epoch}: nothing to train")
            if not (out_dir / checkpoint.EXPORT_DIR / checkpoint.CONFIG_NAME).exists():
                resume(model, optimizer, path, env.device)
                checkpoint.export_for_hub(model.clip, model_config(config.model), out_dir)
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
        return _finished(summary, path, out_dir, config, env) if env.is_main else {}
    if found is not None:
        epoch, path, summary = found
        saved_step = resume(model, optimizer, path, env.device)
        run.start_epoch, run.history = epoch, summary.get("history", [])
        if env.is_main:
            log(f"resuming from {path} (epoch {epoch}, step {saved_step})")
    return run


def train(
    config: TrainConfig,
    job: TrainJob,
    log: Callable[[str], None],
    report: Callable[[dict], None] | None = None,
) -> dict:
    """Train (or resume) and checkpoint every epoch; returns the run summary on rank 0."""
    run = prepare(config, job, log)
    if isinstance(run, dict):
        return run
    env, model = run.env, run.model
    ddp = (
        DistributedDataParallel(model, find_unused_parameters=True) if env.world_size > 1 else model
    )
    loss_fn = ClipLoss(
        local_loss=config.local_loss,
        gather_with_grad=config.gather_with_grad,
        cache_labels=True,
        rank=env.rank,
        world_size=env.world_size,
    )
    batches = iter(
        loader(
            train_pipeline(
                job.train_urls,
                run.preprocess_train,
                run.tokenizer,
                config.batch_size,
                config.seed + run.start_epoch,
                config.shuffle_buffer,
            ),
            config.workers,
        )
    )
    schedule = cosine_lr(run.optimizer, config.lr, config.warmup, run.total_steps)
    started = time.perf_counter()
    last_loss, val = float("nan"), {}
    for epoch in range(run.start_epoch, config.epochs):
        last_loss = train_one_epoch(run, epoch, ddp, loss_fn, batches, schedule, started, log)
        if env.is_main:
            val = end_epoch(run, epoch, last_loss, log, report)
        if env.world_size > 1:
            dist.barrier()
    wall = time.perf_counter() - started
    step = config.epochs * run.steps_per_epoch
    if job.rank_report:
        _write_rank_report(job.rank_report, env, model, step, run.text_types_seen)
    result = {}
    if env.is_main:
        trained = (config.epochs - run.start_epoch) * run.steps_per_epoch * run.global_batch
        result = {
            "run_dir": str(run.out_dir),
            "epochs": config.epochs,
            "steps": step,
            "samples_seen": step * run.global_batch,
            "train_loss": last_loss,
            **val,
            "samples_per_second": round(trained / wall, 2) if wall else 0.0,
            "samples_per_second_per_device": round(trained / wall / env.world_size, 2)
            if wall
            else 0.0,
            "wall_seconds": round(wall, 2),
            "resumed_from_epoch": run.start_epoch,
            "world_size": env.world_size,
            "model": config.model,
            "checkpoint": str(run.out_dir / f"epoch_{config.epochs}.pt"),
            "checkpoints_kept": checkpoint.complete_epochs(run.out_dir),
            "export": str(run.out_dir / checkpoint.EXPORT_DIR),
        }
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return result

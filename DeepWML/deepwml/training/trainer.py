"""``deepwml train``: the paper's recipe, resumable, with DDP for several GPUs.

A run folder holds: ``split.json`` (reused), ``train_config.json``, ``checkpoint.pt`` (every
epoch, atomically replaced; loaded with ``weights_only=True``), ``training_log.csv``,
``training_curves.png`` and ``model/`` (the best model by validation Dice, as safetensors
plus model card). Interrupt it at any time and run the same command again to continue.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..errors import DeepWMLError, ModelFileError
from ..output_folder import output_lock, prepare_output_folder
from ..model_files import ModelCard, inherited_reading, save_model
from ..onnx_backend import export_after_training
from ..segmenter import resolve_device
from ..unet import UNet2D, UNetConfig
from .augment import flip_rotate, intensity, random_crop
from .dataset import SliceDataset, load_canvas_cases
from .loss import bce_dice_loss
from .manifest import manifest_sha256, read_manifest
from .run_record import RECORD_NAME, check_resume, data_fingerprint, recorded_init, set_aside, write_record
from .split import SPLITS, cases_in, load_split, make_split, save_split, slice_selection

log = logging.getLogger(__name__)

LOG_FIELDS = ["epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds", "best"]


@dataclass
class TrainConfig:
    epochs: int = 200
    base_channels: int = 64
    lr: float = 1e-4
    batch_size: int = 8
    seed: int = 0
    device: str = "auto"
    split_level: str = "patient"
    augment_intensity: bool = False
    crop: int = 0
    max_steps_per_epoch: int = 0
    #: validate on at most this many slices, evenly spaced (0: all); keeps CPU runs moving
    val_slices: int = 0
    name: str = "deepwml"
    version: str = "0.1.0"
    notes: str = ""
    #: start from this model's weights (fine-tuning; "" = random initialisation); its
    #: architecture replaces ``base_channels``
    init: str = ""
    #: "auto": bf16 autocast on CUDA, float32 on the CPU (the same on every CPU, so a CPU run
    #: does not depend on the host); "bf16": bf16 autocast on any device -- 2.7x faster per step
    #: on CPUs with native bf16 (AVX512-BF16/AMX; measured, width 16, batch 8 of 160^2), about
    #: 100x slower on the others; "float32": no autocast.
    precision: str = "auto"
    #: what the network learns to segment from the manifest's labels: "lesion" (WMH), "brain"
    #: (a brain-mask model, deepwml.brain_mask), "white-matter" (deepwml.white_matter) or "mesial-temporal"
    #: (deepwml.mesial_temporal); written
    #: into the card, so a model is only ever used for its own task
    task: str = "lesion"
    #: see deepwml.architecture.UNetConfig.input_pool (1: full canvas resolution)
    input_pool: int = 1
    #: processes that read and preprocess the cases (0: one per core); the tensors are the same
    workers: int = 0
    #: stop after the first epoch that ends past this many minutes of training (0: no limit), so a
    #: run fits a lease of a GPU machine; the best checkpoint so far is the model, as always
    max_minutes: float = 0.0
    # Which settings may change when a run is resumed: run_record.MAY_CHANGE.


TRAIN_PRECISIONS = ("auto", "float32", "bf16")


def training_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a training run (None: float32). Weights, optimizer state and the
    saved model stay float32 whatever runs inside autocast."""
    if precision not in TRAIN_PRECISIONS:
        raise ValueError(f"unknown training precision {precision!r} ({', '.join(TRAIN_PRECISIONS)})")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def _atomic_torch_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def plot_curves(log_path: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [float(r["train_loss"]) for r in rows], label="train")
    ax1.plot(epochs, [float(r["val_loss"]) for r in rows], label="validation")
    ax1.set(xlabel="epoch", ylabel="BCE + Dice loss", title="Loss")
    ax1.legend()
    ax2.plot(epochs, [float(r["val_dice"]) for r in rows], color="tab:green")
    ax2.set(xlabel="epoch", ylabel="Dice", title="Validation Dice (canvas, all slices)", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


@torch.no_grad()
def validate(net: torch.nn.Module, data: SliceDataset, device: torch.device, batch_size: int,
             autocast: torch.dtype | None) -> tuple[float, float]:
    """Validation loss and global Dice (threshold 0.5) over all validation slices."""
    net.eval()
    losses, inter, total = [], 0.0, 0.0
    for start in range(0, len(data), batch_size):
        x = data.images[start:start + batch_size].float().to(device)
        y = data.labels[start:start + batch_size].float().to(device)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            logits = net(x)
        losses.append(bce_dice_loss(logits, y).item() * x.shape[0])
        pred = (torch.sigmoid(logits.float()) >= 0.5).float()
        truth = (y >= 0.5).float()
        inter += (pred * truth).sum().item()
        total += pred.sum().item() + truth.sum().item()
    net.train()
    dice = 2 * inter / total if total > 0 else 1.0
    return float(np.sum(losses) / max(len(data), 1)), dice


def _prepare_split(cases, out_dir: Path, config: TrainConfig, slice_counts: dict[str, int],
                   is_main: bool, world: int) -> dict:
    split_path = out_dir / "split.json"
    if not split_path.exists() and is_main:
        save_split(make_split(cases, config.seed, config.split_level, slice_counts), split_path)
    if world > 1:
        dist.barrier()
    split = load_split(split_path, cases)
    if split["level"] != config.split_level:
        raise DeepWMLError(split_path, f"was made at {split['level']} level, not {config.split_level}")
    return split


def _initial_network(config: TrainConfig) -> tuple[UNet2D, dict]:
    """The network to fine-tune and what it was (recorded in the new model's card).

    Loaded through the checked model loader (SHA-256, safetensors, architecture from the
    card), so fine-tuning never unpickles anything. ``bundled`` names the shipped model.
    """
    from ..model_files import load_model

    loaded = load_model(config.init)  # "bundled": the shipped model
    loaded.require_task(config.task, f"; a {config.task} model cannot be fine-tuned from it (pass --task "
                                     f"{loaded.task}, or another --init)")
    if loaded.network.config.base_channels != config.base_channels:
        log.warning("fine-tuning %s: width %d from its card replaces --base-channels %d",
                    loaded.model_id, loaded.network.config.base_channels, config.base_channels)
        config.base_channels = loaded.network.config.base_channels
    started = {"model": loaded.model_id, "path": str(loaded.path),
               "weights_sha256": loaded.card.get("weights_sha256"), "threshold": loaded.threshold}
    if loaded.card.get("contrast_floor") is not None:
        started["contrast_floor"] = loaded.card["contrast_floor"]
    return loaded.network.train(), started


def fine_tune_reading(init_card: dict) -> tuple[float, dict | None, dict]:
    """How a fine-tune's output is read, from the model it started from (:func:`deepwml.model_files.inherited_reading`):
    ``(threshold, contrast_floor entry or None, metrics entry)``; a model trained from random weights gets 0.5, no
    floor and no entry.

    Why: on real whole heads the bundled model's floor is what keeps its marks off bright cortex (README "The bundled
    model"); a site that fine-tunes it on a few of its own scans would otherwise get a model read at 0.5 with no floor.
    ``deepwml choose-threshold`` (or ``train --choose-threshold``) chooses the fine-tune's own threshold on its
    validation cases when there are enough of them (:mod:`deepwml.training.threshold_choice`). Runs recorded before
    parents' readings were kept (no ``threshold`` in the record) read as before."""
    if not init_card or "threshold" not in init_card:
        return 0.5, None, {}
    threshold, floor = inherited_reading(init_card, init_card.get("model"))
    why = (f"inherited from {init_card.get('model')}, which this model was fine-tuned from; choose this model's own "
           "on its validation cases with deepwml choose-threshold MODEL MANIFEST --split SPLIT --record")
    return threshold, floor, {"threshold_selection": {"chosen": threshold, "inherited_from": init_card.get("model"),
                                                      "why": why}}


def _resumed_architecture(out_dir: Path, config: TrainConfig) -> UNetConfig | None:
    """The architecture of a fine-tune being resumed, from the run's own best model (same network
    as the model it started from), or None when there is nothing to resume from that card.

    Why: a resume loads the checkpoint's weights at once, so loading ``--init``'s weights first only
    made the resume fail when that path was gone and read a model that may no longer be the one the
    run started from (the bundled model replaced by the model this run made)."""
    from ..model_files import read_card

    if not (out_dir / "checkpoint.pt").exists():
        return None
    try:
        found = UNetConfig.from_dict(read_card(out_dir / "model")[0]["architecture"])
    except (ModelFileError, ValueError, TypeError):
        return None  # no readable card of its own: --init's model is read as before
    if found.base_channels != config.base_channels:
        log.warning("resuming a fine-tune: width %d from the run's model replaces --base-channels %d",
                    found.base_channels, config.base_channels)
    return found


def _started_from(out_dir: Path, now: dict) -> dict:
    """What a resumed run records as its start: the model its first session started from, even
    when ``--init``'s path now holds another (see :func:`run_record.recorded_init`)."""
    first = recorded_init(out_dir)
    if not first:
        return now
    if first.get("weights_sha256") != now.get("weights_sha256"):
        log.warning("%s now holds %s; this run started from %s (weights %s...), which its model card keeps",
                    now.get("path"), now.get("model"), first.get("model"), str(first.get("weights_sha256"))[:12])
    return first


#: What --restart sets aside (renamed, never deleted): the previous run's best model included.
PREVIOUS_RUN = ("checkpoint.pt", "training_log.csv", "training_curves.png", "model", RECORD_NAME)


def _check_resume(out_dir: Path, config: TrainConfig, restart: bool, is_main: bool,
                  fingerprint: dict) -> Path | None:
    """Return the checkpoint to resume from, after checking that settings and data are the
    run's own; on restart, set the previous run aside (renamed, best model included)."""
    ckpt = out_dir / "checkpoint.pt"
    if restart:
        if is_main:
            set_aside(out_dir, PREVIOUS_RUN)
        return None
    if ckpt.exists():
        check_resume(out_dir, config, fingerprint)
        return ckpt
    if (out_dir / "model").exists():
        raise DeepWMLError(out_dir / "model", "holds a model but the folder has no checkpoint to resume; "
                                              "pass --restart to set it aside, or use another folder")
    return None


def _load_checkpoint(path: Path) -> dict:
    """The checkpoint's state (``weights_only``: nothing is unpickled beyond tensors), or one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"model", "optimizer", "epoch"} <= set(state):
            raise ValueError("not a DeepWML checkpoint")
        return state
    except Exception as err:  # pickle, zip and torch raise many types for a bad or hostile file
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise DeepWMLError(path, f"cannot be resumed from ({reason}); pass --restart to set it aside "
                                 "and start over") from None


def train(manifest: Path, out_dir: Path, config: TrainConfig, resume: bool = True,
          progress: bool = True) -> Path:
    """Train (or resume) a model; return the folder of the best model.

    The run folder is locked (like segment's output folder) so that a second run into it is
    refused instead of interleaving logs and checkpoints.
    """
    out_dir = prepare_output_folder(out_dir)
    lock = output_lock(out_dir, "deepwml train") if _distributed()[0] == 0 else contextlib.nullcontext()
    with lock:
        return _train(manifest, out_dir, config, resume, progress)


def _out_of_time(config: TrainConfig, t_start: float, epoch: int, world: int, device: torch.device) -> bool:
    """Whether ``max_minutes`` is spent after ``epoch`` (rank 0's clock decides for every rank)."""
    if not config.max_minutes or epoch + 1 >= config.epochs:
        return False
    spent = torch.tensor([float(time.perf_counter() - t_start > 60 * config.max_minutes)], device=device)
    if world > 1:
        dist.broadcast(spent, src=0)  # on the training device: NCCL takes CUDA tensors only
    return bool(spent.item())


def _train(manifest: Path, out_dir: Path, config: TrainConfig, resume: bool, progress: bool) -> Path:
    from tqdm import tqdm

    rank, world = _distributed()
    device = resolve_device(config.device)
    if world > 1:
        if device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)

    cases = read_manifest(manifest)
    fingerprint = data_fingerprint(cases)
    loaded = load_canvas_cases(cases, config.workers, progress and is_main)
    counts = {cc.case.case: cc.images.shape[0] for cc in loaded}
    split = _prepare_split(cases, out_dir, config, counts, is_main, world)
    data = {}
    for name in SPLITS:
        items = []
        for cc in loaded:
            sel = torch.from_numpy(slice_selection(split, cc.case, name, counts[cc.case.case]))
            if sel.any():
                items.append((cc.images[sel], cc.labels[sel]))
        data[name] = SliceDataset(items)
    del loaded
    if config.val_slices and len(data["val"]) > config.val_slices:
        pick = torch.linspace(0, len(data["val"]) - 1, config.val_slices).long()
        data["val"].images, data["val"].labels = data["val"].images[pick], data["val"].labels[pick]
    if len(data["train"]) == 0 or len(data["val"]) == 0:
        raise DeepWMLError(manifest, "too few cases for a train/validation split (need >= 3 per "
                                     "center and disease)")

    init_card: dict = {}
    resumed_arch = _resumed_architecture(out_dir, config) if config.init and resume else None
    if resumed_arch is not None:  # the checkpoint replaces the weights: --init's path is not read again
        net = UNet2D(resumed_arch).to(device)
        config.base_channels = resumed_arch.base_channels
        init_card = recorded_init(out_dir) or {}
    elif config.init:
        net, init_card = _initial_network(config)
        net = net.to(device)
    else:
        net = UNet2D(UNetConfig(base_channels=config.base_channels, input_pool=config.input_pool)).to(device)
    if config.crop % net.config.divisor:
        raise DeepWMLError(None, f"--crop {config.crop} is not a multiple of this network's divisor "
                                 f"{net.config.divisor} (width {net.config.base_channels}, input pool "
                                 f"{net.config.input_pool})")
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    start_epoch, best_dice, best_epoch = 0, -1.0, -1
    ckpt_path = _check_resume(out_dir, config, restart=not resume, is_main=is_main, fingerprint=fingerprint)
    if world > 1:
        dist.barrier()
    if ckpt_path is not None:
        state = _load_checkpoint(ckpt_path)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = config.lr
        start_epoch, best_dice, best_epoch = int(state["epoch"]), float(state["best_dice"]), int(state["best_epoch"])
        if is_main:
            log.warning("resuming %s after epoch %d (best validation Dice %.4f)", out_dir, start_epoch, best_dice)
        init_card = _started_from(out_dir, init_card) if init_card and resumed_arch is None else init_card
    if is_main:
        write_record(out_dir, config, fingerprint, start_epoch, manifest, init_card or None)
    model = DistributedDataParallel(net) if world > 1 else net
    autocast = training_autocast(config.precision, device)
    # oneDNN's bf16 convolutions want NHWC; float32 runs keep their layout (bit-identical)
    channels_last = autocast is not None and device.type == "cpu"
    if channels_last:
        net.to(memory_format=torch.channels_last)
    log_path = out_dir / "training_log.csv"
    if is_main and not log_path.exists():
        with open(log_path, "w", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=LOG_FIELDS).writeheader()

    n_train = len(data["train"])
    steps = math.ceil(n_train / (config.batch_size * world))
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    model_dir = out_dir / "model"
    t_start = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(config.seed * 100003 + epoch)
        order = torch.randperm(n_train, generator=gen)
        aug_gen = torch.Generator().manual_seed(config.seed * 7919 + epoch * 31 + rank)
        model.train()
        losses = []
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                   disable=not (progress and is_main), leave=False)
        for step in bar:
            batch = order[(step * world + rank) * config.batch_size:][:config.batch_size]
            if len(batch) == 0:
                batch = order[:config.batch_size]
            # augment where the network runs: on a GPU the warps and crops no longer hold it up
            x = data["train"].images[batch].to(device, non_blocking=True).float()
            y = data["train"].labels[batch].to(device, non_blocking=True).float()
            x, y = flip_rotate(x, y, aug_gen)
            if config.augment_intensity:
                x = intensity(x, aug_gen)
            x, y = random_crop(x, y, config.crop, aug_gen)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                logits = model(x)
            loss = bce_dice_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        val_loss, val_dice = validate(net, data["val"], device, config.batch_size * 2, autocast)
        improved = val_dice > best_dice
        if improved:
            best_dice, best_epoch = val_dice, epoch + 1
        if is_main:
            if improved:
                threshold, floor, inherited = fine_tune_reading(init_card)
                card = ModelCard(config.name, config.version, net.config, training={
                    "manifest": str(manifest), "manifest_sha256": manifest_sha256(manifest),
                    "cases": {s: len(cases_in(split, cases, s)) for s in SPLITS},
                    "slices": {s: len(data[s]) for s in SPLITS},
                    "centers": sorted({c.center for c in cases}),
                    "diseases": sorted({c.disease for c in cases}),
                    "config": asdict(config), "epoch": best_epoch, "world_size": world,
                    "device": str(device), **({"initialised_from": init_card} if init_card else {}),
                }, metrics={"validation_dice_canvas": round(best_dice, 4),
                            "validation_loss": round(val_loss, 4), **inherited}, notes=config.notes, task=config.task,
                    threshold=threshold, contrast_floor=floor)
                save_model(net, card, model_dir)
            _atomic_torch_save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                "epoch": epoch + 1, "best_dice": best_dice, "best_epoch": best_epoch},
                               out_dir / "checkpoint.pt")
            with open(log_path, "a", newline="", encoding="utf-8") as handle:
                csv.DictWriter(handle, fieldnames=LOG_FIELDS).writerow({
                    "epoch": epoch + 1, "train_loss": round(float(np.mean(losses)), 5),
                    "val_loss": round(val_loss, 5), "val_dice": round(val_dice, 5), "lr": config.lr,
                    "seconds": round(time.perf_counter() - t0, 2), "best": int(improved)})
            plot_curves(log_path, out_dir / "training_curves.png")
            if progress:
                tqdm.write(f"epoch {epoch + 1}: train loss {np.mean(losses):.4f}, val loss {val_loss:.4f}, "
                           f"val Dice {val_dice:.4f}{' (best)' if improved else ''}")
        if _out_of_time(config, t_start, epoch, world, device):
            log.info("stopping after epoch %d of %d: %.1f min of training (max_minutes %g)", epoch + 1,
                     config.epochs, (time.perf_counter() - t_start) / 60, config.max_minutes)
            break
        if world > 1:
            dist.barrier()
    if world > 1:
        dist.destroy_process_group()
    if is_main and (model_dir / "model.json").exists():
        export_after_training(model_dir)
    return model_dir

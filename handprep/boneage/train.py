"""Training the bone-age regressor (``handprep train-resnet34``).

Stable by design, because a naive from-scratch run swings wildly from epoch to epoch:
targets are z-scored, the learning rate warms up linearly, gradients are clipped, and an
exponential moving average (EMA) of the weights *and* of the batch-norm statistics is what is
validated, kept as best and shipped (the raw weights' validation MAE is logged beside it).
Augmentation runs batched on the training device; random draws come from generators seeded
by (seed, epoch), so ``--resume`` from a checkpoint reproduces an uninterrupted run exactly.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import handprep
from handprep.boneage import data as bdata
from handprep.boneage.augment import AugmentConfig, augment_batch
from handprep.boneage.infer import RowView, normalise, predict_months, to_unit
from handprep.boneage.model import BACKBONES, SEX_MODES, BoneAgeNet, ModelFileError, build_model, \
    load_imagenet_backbone, read_model_file, save_model_file
from handprep.io import atomic_write_text, refuse_output_overlap, write_rows_csv
from handprep.modelfile import pick_device, save_checkpoint

LOSSES = ("mae", "mse", "huber")
SCHEDULERS = ("plateau", "cosine")
DEFAULT_AGE_BINS = (0, 24, 48, 72, 96, 120, 144, 168, 192, 216, 300)


@dataclass
class TrainConfig:
    dataset: str
    labels: str
    out: str
    backbone: str = "resnet34"
    sex_mode: str = "scalar"
    hidden: int = 2048
    dropout: float = 0.5
    size_px: int | None = None  # network input; None = the dataset's size
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    loss: str = "mae"
    huber_delta: float = 0.5  # in units of the label standard deviation
    scheduler: str = "plateau"
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    warmup_epochs: int = 3
    patience: int = 30  # early stopping on validation MAE
    ema_decay: float = 0.99  # 0 turns the averaged model off
    grad_clip: float = 5.0
    checkpoint_every: int = 7
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_file: str | None = None
    seed: int = 0
    augment: bool = True
    rotation_deg: float = 20.0
    translate: float = 0.08
    zoom: float = 0.12
    contrast: float = 0.2
    weighted_augment: bool = True
    age_bins: tuple[float, ...] = DEFAULT_AGE_BINS
    extra_fraction: float = 1.0  # weighted copies per epoch, as a fraction of the training set
    max_copies: int = 8
    workers: int = 0
    device: str = "auto"
    amp: bool = True
    imagenet_weights: str | None = None
    init_from: str | None = None
    drop_unlabelled: bool = False
    tta_views: int = 8
    interval_level: float = 0.9
    max_minutes: float | None = None
    threads: int | None = None

    def validate(self) -> None:
        checks = [(self.backbone in BACKBONES, f"backbone must be one of {', '.join(BACKBONES)}"),
                  (self.sex_mode in SEX_MODES, f"sex mode must be one of {', '.join(SEX_MODES)}"),
                  (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}"),
                  (self.scheduler in SCHEDULERS, f"scheduler must be one of {', '.join(SCHEDULERS)}"),
                  (self.epochs >= 1 and self.batch_size >= 1, "epochs and batch size must be ≥ 1"),
                  (0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
                  (0 < self.interval_level < 1, "interval level must be in (0, 1)"),
                  (len(self.age_bins) >= 2, "age bins need at least two edges"),
                  (self.size_px is None or self.size_px >= 32, "size_px must be ≥ 32")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class TrainResult:
    out: Path
    model_path: Path
    history: list[dict]
    metrics: dict
    stopped: str = ""
    notes: list[str] = field(default_factory=list)


class EMA:
    """Exponential moving average of every float parameter and buffer (BN statistics too);
    the decay ramps up as (1 + step) / (10 + step) so early averages are not stuck at init."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.step = decay, 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.step += 1
        d = min(self.decay, (1 + self.step) / (10 + self.step))
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        floats = [(e, n.detach()) for e, n in pairs if e.is_floating_point()]
        torch._foreach_lerp_([e for e, _ in floats], [n for _, n in floats], 1 - d)  # e += (1 - d)(n - e)
        for e, n in pairs:
            if not e.is_floating_point():
                e.copy_(n)

    def state_dict(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])


class _EpochOrder(torch.utils.data.Sampler):
    """Yields this epoch's training positions (set before each epoch, drawn in the main process)."""

    def __init__(self):
        self.order: list[int] = []

    def __iter__(self):
        return iter(list(self.order))

    def __len__(self) -> int:
        return len(self.order)


class _Rows(torch.utils.data.Dataset):
    """Rows of the memory-mapped array, with sex and normalised age, in a given order."""

    def __init__(self, images: np.ndarray, rows: np.ndarray, male: np.ndarray, target: np.ndarray):
        self.images, self.rows, self.male, self.target = images, rows, male, target

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int):
        r = self.rows[k]
        return torch.from_numpy(np.array(self.images[r])), self.male[k], self.target[k]


def _loss_fn(config: TrainConfig):
    if config.loss == "mae":
        return nn.L1Loss()
    if config.loss == "mse":
        return nn.MSELoss()
    return nn.HuberLoss(delta=config.huber_delta)


def _pixel_stats(images: np.ndarray, rows: np.ndarray, seed: int) -> tuple[float, float]:
    pick = np.sort(np.random.default_rng(seed).permutation(rows)[:256])
    sample = np.asarray(images[pick], dtype=np.float32) / 255
    return float(sample.mean()), float(max(sample.std(), 1e-3))


def prepare(config: TrainConfig, log=print) -> dict:
    """Open the dataset, join labels, split (persisted in OUT/split.csv), plan weighted copies."""
    dataset = bdata.open_dataset(config.dataset)
    labelled = bdata.join_labels(dataset, bdata.read_label_table(config.labels), config.labels,
                                 config.drop_unlabelled)
    for note in labelled.notes:
        log(f"note: {note}")
    out = Path(config.out)
    split_path = out / "split.csv"
    split_file = config.split_file or (split_path if split_path.is_file() else None)
    split = bdata.resolve_split(labelled, split_file, config.split_fractions, config.seed)
    bdata.write_split(split_path, split, dict(zip(labelled.ids, labelled.ages.tolist())))
    parts = {name: np.array([k for k, i in enumerate(labelled.ids) if split[i] == name], dtype=np.int64)
             for name in bdata.SPLITS}
    if len(parts["train"]) == 0 or len(parts["val"]) == 0:
        raise bdata.BoneAgeDataError(f"the split leaves {len(parts['train'])} training and {len(parts['val'])} "
                                     "validation images; both need at least one (more images, other fractions)")
    train_ages = labelled.ages[parts["train"]]
    if config.weighted_augment:  # with --no-augment the copies are plain repeats (oversampling)
        copies, histogram = bdata.augmentation_copies(train_ages, list(config.age_bins), config.extra_fraction,
                                                      config.max_copies)
    else:
        copies, histogram = np.zeros(len(train_ages), np.int64), None
    return {"dataset": dataset, "labelled": labelled, "split": split, "parts": parts,
            "copies": copies, "histogram": histogram}


def _norm(config: TrainConfig, prepared: dict, init_meta: dict | None) -> dict:
    if init_meta is not None:  # fine-tuning keeps the scale the head was trained on
        return dict(init_meta["norm"])
    labelled, train = prepared["labelled"], prepared["parts"]["train"]
    ages = labelled.ages[train]
    pixel_mean, pixel_std = _pixel_stats(prepared["dataset"].images, labelled.rows[train], config.seed)
    return {"label_mean": float(ages.mean()), "label_std": float(max(ages.std(), 1.0)),
            "pixel_mean": pixel_mean, "pixel_std": pixel_std}


def _init_weights(model: BoneAgeNet, config: TrainConfig, log) -> dict | None:
    if config.imagenet_weights:
        n = load_imagenet_backbone(model, config.imagenet_weights)
        log(f"backbone: {n} ImageNet tensors from {config.imagenet_weights}")
    if not config.init_from:
        return None
    path = Path(config.init_from)
    if not path.is_file():
        raise ModelFileError(f"{path}: --init-from file not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and state.get("format") == "handprep-boneage":
        meta, weights = state["meta"], state["state_dict"]
    elif isinstance(state, dict) and "ema" in state and "meta" in state:  # a training checkpoint
        meta, weights = state["meta"], state["ema"]["model"]
    else:
        raise ModelFileError(f"{path}: not a handprep bone-age model or checkpoint")
    if meta["arch"] != model_arch(config):
        raise ModelFileError(f"{path}: network {meta['arch']} differs from the one asked for "
                             f"{model_arch(config)}; pass the same --backbone/--sex-mode/--hidden")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    log(f"initialised from {path} (label and pixel normalisation kept)")
    return meta


def model_arch(config: TrainConfig) -> dict:
    return {"backbone": config.backbone, "sex_mode": config.sex_mode, "hidden": config.hidden,
            "dropout": config.dropout}


def _lr_factor(config: TrainConfig, epoch: int, step: int, steps: int) -> float:
    """Warm-up (linear, per step) for either schedule; cosine decay after it when chosen."""
    t = epoch + step / max(steps, 1)
    if config.warmup_epochs and t < config.warmup_epochs:
        return (t + 1 / max(steps, 1)) / config.warmup_epochs
    if config.scheduler == "cosine":
        span = max(config.epochs - config.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (t - config.warmup_epochs) / span)))
    return 1.0


def _epoch_order(prepared: dict, config: TrainConfig, epoch: int) -> np.ndarray:
    """Training positions for this epoch: each image once plus its weighted copies, shuffled."""
    train = prepared["parts"]["train"]
    order = np.repeat(train, 1 + prepared["copies"])
    return order[np.random.default_rng([config.seed, epoch]).permutation(len(order))]


def _run_epoch(model, ema, optimizer, loader, config, state, epoch, device, loss_fn, bar) -> dict:
    model.train()
    aug = AugmentConfig(config.rotation_deg, config.translate, config.zoom, config.contrast)
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    torch.manual_seed(config.seed * 7919 + epoch)  # dropout draws
    use_amp = config.amp and device.type == "cuda"
    size, norm = state["size_px"], state["norm"]
    losses, errors, steps = [], [], len(loader)
    for step, (images, male, target) in enumerate(loader):
        for group in optimizer.param_groups:
            group["lr"] = state["base_lr"] * _lr_factor(config, epoch, step, steps)
        x = to_unit(images.to(device, non_blocking=True), size)
        if config.augment:
            x = augment_batch(x, aug, generator)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        male, target = male.to(device).float(), target.to(device).float()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = model(normalise(x, norm), male).float()
        loss = loss_fn(out, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update(model)
        losses.append(loss.detach())
        errors.append((out.detach() - target).abs().mean() * norm["label_std"])
        bar.update(len(images))
    return {"train_loss": float(torch.stack(losses).mean()), "train_mae": float(torch.stack(errors).mean())}


def _val_mae(model, prepared, state, device, batch_size) -> float:
    labelled, val = prepared["labelled"], prepared["parts"]["val"]
    rows = labelled.rows[val]
    images = prepared["dataset"].images
    mean, _ = predict_months(model, RowView(images, rows), labelled.male[val], state["norm"], state["size_px"],
                             device, views=1, batch_size=batch_size)
    return float(np.mean(np.abs(mean - labelled.ages[val])))


def base_meta(config: TrainConfig, prepared: dict, state: dict) -> dict:
    dataset, parts = prepared["dataset"], prepared["parts"]
    return {
        "arch": model_arch(config), "size_px": state["size_px"], "dataset_size_px": dataset.size_px,
        "norm": state["norm"], "pipeline": dataset.pipeline, "dataset": str(dataset.folder),
        "labels": str(config.labels), "split_counts": {k: int(len(v)) for k, v in parts.items()},
        "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()},
        "versions": {"handprep": handprep.__version__, "torch": str(torch.__version__),
                     "numpy": np.__version__, "python": platform.python_version()},
    }


def _resumed_config(config: TrainConfig, checkpoint: dict) -> TrainConfig:
    """The checkpoint's settings, except those that may change between sessions."""
    saved = checkpoint["meta"]["train_config"]
    return TrainConfig(**{**saved, "epochs": config.epochs, "workers": config.workers,
                          "max_minutes": config.max_minutes, "device": config.device, "threads": config.threads,
                          "split_fractions": tuple(saved["split_fractions"]), "age_bins": tuple(saved["age_bins"])})


def _load_checkpoint(path: Path, config: TrainConfig) -> dict:
    if not path.is_file():
        raise ModelFileError(f"{path}: no checkpoint to resume from (one is written every "
                             f"{config.checkpoint_every} epochs and at the end)")
    return torch.load(path, map_location="cpu", weights_only=True)


def _restore(checkpoint: dict, model, ema, optimizer, plateau, state: dict, log) -> dict:
    """Load a checkpoint into the training objects; returns the progress counters."""
    model.load_state_dict(checkpoint["model"])
    if ema is not None:
        ema.load_state_dict(checkpoint["ema"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    plateau.load_state_dict(checkpoint["plateau"])
    state["base_lr"] = float(checkpoint["base_lr"])
    progress = {"history": checkpoint["history"], "start": int(checkpoint["epoch"]), "best": float(checkpoint["best"]),
                "best_epoch": int(checkpoint["best_epoch"]), "bad": int(checkpoint["bad"])}
    log(f"resuming after epoch {progress['start']} (best validation MAE {progress['best']:.2f} months "
        f"at epoch {progress['best_epoch']})")
    return progress


def _loader(prepared: dict, config: TrainConfig, state: dict, device) -> torch.utils.data.DataLoader:
    """One loader for the whole run: workers start once; its sampler's order is set per epoch."""
    labelled, norm = prepared["labelled"], state["norm"]
    rows = _Rows(prepared["dataset"].images, labelled.rows, labelled.male,
                 (labelled.ages - norm["label_mean"]) / norm["label_std"])
    size = len(_epoch_order(prepared, config, 0))
    return torch.utils.data.DataLoader(rows, batch_size=config.batch_size, sampler=_EpochOrder(),
                                       num_workers=config.workers, drop_last=size > config.batch_size,
                                       pin_memory=device.type == "cuda", persistent_workers=config.workers > 0)


def _stop_reason(config: TrainConfig, bad: int, started: float) -> str:
    if bad >= config.patience:
        return f"early stop: validation MAE did not improve for {config.patience} epochs"
    if config.max_minutes is not None and (time.time() - started) / 60 > config.max_minutes:
        return f"time budget of {config.max_minutes:g} min reached"
    return ""


def train(config: TrainConfig, resume: bool = False, progress: bool = True, log=print) -> TrainResult:
    """Train; writes OUT/model.pt (best averaged model), last.pt, history.csv, split.csv, then
    evaluates on the validation and test splits (see ``evaluate.evaluate_run``)."""
    config.validate()
    refuse_output_overlap(config.out, {"dataset folder": config.dataset, "labels file": config.labels})
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    last_path, model_path = out / "last.pt", out / "model.pt"
    checkpoint = _load_checkpoint(last_path, config) if resume else None
    if checkpoint is not None:
        config = _resumed_config(config, checkpoint)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    prepared = prepare(config, log)
    model = build_model(model_arch(config))
    init_meta = _init_weights(model, config, log) if checkpoint is None else None
    state = {"size_px": config.size_px or prepared["dataset"].size_px, "base_lr": config.lr,
             "norm": checkpoint["meta"]["norm"] if checkpoint else _norm(config, prepared, init_meta)}
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, config.ema_decay) if config.ema_decay > 0 else None
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.plateau_factor,
                                                         patience=config.plateau_patience)
    meta = base_meta(config, prepared, state)
    _plot_histogram(out, prepared["histogram"], log)
    p = {"history": [], "start": 0, "best": math.inf, "best_epoch": 0, "bad": 0}
    if checkpoint is not None:
        p = _restore(checkpoint, model, ema, optimizer, plateau, state, log)
    history = p["history"]
    loader, loss_fn = _loader(prepared, config, state, device), _loss_fn(config)
    scored = ema.model if ema is not None else model
    started, stopped, best_state = time.time(), "", None
    for epoch in range(p["start"], config.epochs):
        order = _epoch_order(prepared, config, epoch)
        loader.sampler.order = order.tolist()
        n_images = len(loader) * config.batch_size if loader.drop_last else len(order)
        t0 = time.time()
        with tqdm(total=n_images, unit="img", desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                  leave=False) as bar:
            row = _run_epoch(model, ema, optimizer, loader, config, state, epoch, device, loss_fn, bar)
        seconds = time.time() - t0
        val_raw = _val_mae(model, prepared, state, device, config.batch_size * 2)
        val = _val_mae(scored, prepared, state, device, config.batch_size * 2) if ema is not None else val_raw
        if epoch + 1 > config.warmup_epochs and config.scheduler == "plateau":
            plateau.step(val)
            state["base_lr"] = optimizer.param_groups[0]["lr"]  # plateau cuts act on the base rate
        history.append(_epoch_row(epoch, optimizer, row, val, val_raw, n_images, seconds))
        improved = val < p["best"]
        if improved:
            p.update(best=val, best_epoch=epoch + 1, bad=0)
            best_state = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
        else:
            p["bad"] += 1
        log(_epoch_line(history[-1], improved))
        stopped = _stop_reason(config, p["bad"], started)
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs or stopped:
            if best_state is not None:  # the best since the last checkpoint
                _save_best(model_path, best_state, {**meta, "epoch": p["best_epoch"], "val_mae_single_view": p["best"]})
                best_state = None
            save_checkpoint(last_path, {"meta": meta, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "ema": ema.state_dict() if ema is not None else None, "plateau": plateau.state_dict(),
                              "base_lr": state["base_lr"], "epoch": epoch + 1, "best": p["best"],
                              "best_epoch": p["best_epoch"], "bad": p["bad"], "history": history})
        write_rows_csv(out / "history.csv", history)
        if stopped:
            log(stopped)
            break
    from handprep.boneage.evaluate import evaluate_run

    metrics = evaluate_run(out, prepared, config, device, history, log=log, progress=progress)
    return TrainResult(out, model_path, history, metrics, stopped, prepared["labelled"].notes)


def _epoch_row(epoch, optimizer, row, val, val_raw, n_images, seconds) -> dict:
    return {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": round(row["train_loss"], 5),
            "train_mae": round(row["train_mae"], 4), "val_mae": round(val, 4), "val_mae_raw": round(val_raw, 4),
            "images": n_images, "seconds": round(seconds, 2), "images_per_s": round(n_images / max(seconds, 1e-9), 2)}


def _epoch_line(row: dict, improved: bool) -> str:
    return (f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  train MAE {row['train_mae']:6.2f}  "
            f"val MAE {row['val_mae']:6.2f} (raw weights {row['val_mae_raw']:6.2f})  lr {row['lr']:.2e}  "
            f"{row['seconds']:.1f} s{'  *' if improved else ''}")


def _save_best(path: Path, state: dict, meta: dict) -> None:
    holder = build_model(meta["arch"])
    holder.load_state_dict(state)
    save_model_file(path, holder, meta)


def _plot_histogram(out: Path, histogram: dict | None, log) -> None:
    if histogram is None:
        return
    from handprep.boneage.plots import age_histogram

    age_histogram(out / "age_histogram.png", histogram)
    atomic_write_text(out / "age_histogram.json", json.dumps(histogram, indent=2))
    log(f"weighted augmentation: images per age bin {histogram['before']} → with copies {histogram['after']}")


__all__ = ["TrainConfig", "TrainResult", "train", "prepare", "read_model_file"]

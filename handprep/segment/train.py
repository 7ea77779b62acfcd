"""Training the patch U-Net from hand masks (``handprep segment-train``).

Images and masks are brought to the working scale (long side ``work_size_px``), split 80/20
by image with a seed, augmented once per image per epoch, cut into overlapping tiles
(``tile_px``, ``stride_px``), and learnt with BCE (optionally + Dice) and Adam. Each epoch
reports train/val loss and val Dice/IoU on whole validation images (sliding window, as in
inference) — on the clean images and on a fixed, seeded "hard" variant of them (grey
backgrounds, borders, markers, inversion) that measures robustness. The best epoch (mean of
the two Dice; clean Dice alone when training without augmentation) is kept; ``last.pt`` allows resuming; training stops early after ``patience``
epochs without improvement.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import handprep
from handprep.io import ImageReadError, atomic_write_text, content_hash, list_images, write_rows_csv, \
    read_file_bytes, decode_image, decode_mask, refuse_output_overlap
from handprep.segment.augment import AugmentConfig, augment
from handprep.segment.files import INPUT_CROPS, NORMALISATIONS, POSTPROCESSING
from handprep.segment.infer import (binarise, crop, input_box, local_contrast, postprocess, to_full_size, to_work_image,
                                    to_work_mask)
from handprep.segment.metrics import compare, summarise, write_metrics_csv
from handprep.modelfile import pick_device, save_checkpoint
from handprep.segment.model import ARCHITECTURES, build_unet, load_model, save_model
from handprep.segment.tiling import check_stride, extract_patches, sliding_window
from handprep.stages.mask import fill_contours, largest_component


class TrainingDataError(ValueError):
    """No usable image/mask pairs (the message lists every problem found)."""


@dataclass
class TrainConfig:
    images: str | list[str]  # one folder, or several (e.g. rsna60 and rsna-raw); ids must not repeat
    masks: str
    out: str
    architecture: str = "mobilenetv3_small"
    encoder_weights: str | None = None  # None, "imagenet" (online), or a local .pt path
    work_size_px: int = 384
    tile_px: int = 128
    stride_px: int = 64
    batch_size: int = 32
    epochs: int = 50
    lr: float = 1e-3
    patience: int = 10
    val_fraction: float = 0.2
    seed: int = 0
    loss: str = "bce"  # "bce" or "bce+dice"
    augment: bool = True
    threshold: float = 0.5
    device: str = "auto"
    max_minutes: float | None = None  # stop (and keep the best so far) after this long
    resume: bool = False
    split: str | None = None  # splits_final.json: train/validation used, test never loaded
    init_model: str | None = None  # start from this model file's weights (same architecture)
    input_crop: str = "film_box"  # "film_box": show the model the film inside black padding; "none"
    postprocess: str = "largest_region"  # or "fill_5pct"; recorded in the model file for inference
    normalisation: str = "percentile"  # or "percentile+clahe" (files.NORMALISATIONS)


@dataclass
class Pair:
    id: str
    image_path: str
    mask_path: str
    work_image: np.ndarray
    work_mask: np.ndarray
    mask_sha256: str
    full_mask: np.ndarray | None = None  # kept for validation images only
    box: tuple[int, int, int, int] | None = None  # the part of the radiograph the model sees


@dataclass
class TrainResult:
    model_path: Path
    history: list[dict]
    metrics: dict
    skipped: dict[str, str] = field(default_factory=dict)
    stopped: str = ""


def image_folders(images: str | Path | list) -> list[Path]:
    """One image folder or several, as a list."""
    return [Path(images)] if isinstance(images, (str, Path)) else [Path(f) for f in images]


def input_folders(images: str | Path | list, masks: str | Path) -> dict[str, Path]:
    """The folders a segmenter command reads, named for an output-overlap message."""
    return {"mask folder": Path(masks), **{f"image folder {i + 1}": f for i, f in enumerate(image_folders(images))}}


def image_files(images: str | Path | list) -> dict[str, Path]:
    """Images by stem from one folder or several; a stem found twice is an error (ambiguous pair)."""
    files: dict[str, Path] = {}
    for folder in image_folders(images):
        for path in list_images(folder):
            if path.stem in files:
                raise TrainingDataError(f"image id {path.stem} is in both {files[path.stem]} and {path}; "
                                        "rename one so masks match a single image")
            files[path.stem] = path
    return files


def read_split(path: str | Path) -> dict[str, list[str]]:
    """A persisted split (nnU-Net style ``splits_final.json``): ``{"train": [...], "validation": [...], "test": [...]}``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{path}: cannot read the split file ({exc})") from None
    if not isinstance(data, dict) or not {"train", "validation"} <= set(data):
        raise TrainingDataError(f"{path}: a split file needs 'train' and 'validation' lists (and usually 'test')")
    split = {k: [str(i) for i in data.get(k, [])] for k in ("train", "validation", "test")}
    seen: dict[str, str] = {}
    for name, ids in split.items():
        for i in ids:
            if i in seen:
                raise TrainingDataError(f"{path}: id {i} is in both '{seen[i]}' and '{name}'")
            seen[i] = name
    return split


def load_pairs(images: str | Path | list, masks: str | Path, work_size_px: int, keep_full: set[str] | None = None,
               progress: bool = True, only: set[str] | None = None,
               input_crop: str = "none") -> tuple[list[Pair], dict[str, str]]:
    """Image/mask pairs matched by stem, cropped as the model will see them (``input_crop``) and
    brought to the working scale; problems are returned, not raised.

    ``only`` restricts loading to those ids (so a split's test masks are never even read).
    """
    files = image_files(images)
    mask_files = {p.stem: p for p in Path(masks).glob("*.png") if only is None or p.stem in only}
    if not mask_files:
        raise TrainingDataError(f"no masks (*.png) in {masks}" + (" for the split's ids" if only else ""))
    problems: dict[str, str] = {}
    for stem in sorted(set(mask_files) - set(files)):
        problems[str(mask_files[stem])] = f"no image named {stem} in {images}"
    pairs = []
    for stem in tqdm(sorted(set(mask_files) & set(files)), desc="loading pairs", unit="img",
                     disable=not progress):
        try:
            image, _ = decode_image(read_file_bytes(files[stem]), str(files[stem]))
            mask_bytes = read_file_bytes(mask_files[stem])
            mask = decode_mask(mask_bytes, str(mask_files[stem]))
        except ImageReadError as exc:
            problems[stem] = str(exc)
            continue
        if mask.shape != image.shape:
            problems[stem] = (f"mask {mask_files[stem]} is {mask.shape[1]}×{mask.shape[0]} px but image "
                              f"{files[stem]} is {image.shape[1]}×{image.shape[0]} px")
            continue
        if not mask.any():
            problems[stem] = f"mask {mask_files[stem]} is empty (no hand); fix it or remove it"
            continue
        box = input_box(image, input_crop)
        pairs.append(Pair(stem, str(files[stem]), str(mask_files[stem]), to_work_image(crop(image, box), work_size_px),
                          to_work_mask(crop(mask, box), work_size_px), content_hash(mask_bytes),
                          mask if keep_full is None or stem in keep_full else None, box))
    return pairs, problems


def split_ids(ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic split by image: the same ids and seed always give the same split."""
    ids = sorted(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = max(1, round(len(ids) * val_fraction)) if len(ids) > 1 and val_fraction > 0 else 0
    val = sorted(ids[i] for i in order[:n_val])
    return sorted(set(ids) - set(val)), val


def hard_variant(pair: Pair, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded hard version of a validation image: background, border, marker, maybe inverted."""
    rng = np.random.default_rng([seed, int(content_hash(pair.id.encode())[:8], 16)])
    cfg = AugmentConfig(p_geometry=0.0, p_background=1.0, background_level=(0.2, 0.5), p_border=0.7,
                        p_marker=1.0, p_collimation=0.3, p_invert=0.3, p_blur=0.5, p_noise=1.0)
    return augment(pair.work_image, pair.work_mask, rng, cfg)


def _epoch_patches(pairs: list[Pair], config: TrainConfig, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    images, masks = [], []
    for i, pair in enumerate(pairs):
        rng = np.random.default_rng([config.seed, epoch, i])
        image, mask = (augment(pair.work_image, pair.work_mask, rng) if config.augment
                       else (pair.work_image, pair.work_mask))
        image = local_contrast(image, NORMALISATIONS[config.normalisation])
        images.append(extract_patches(image, config.tile_px, config.stride_px))
        masks.append(extract_patches(mask, config.tile_px, config.stride_px))
    # explicit float32: under numpy 2 a float64 scalar would promote patches to float64
    return np.concatenate(images).astype(np.float32, copy=False), np.concatenate(masks).astype(np.float32, copy=False)


def _loss_fn(kind: str):
    bce = nn.BCEWithLogitsLoss()

    def loss(logits, target):
        value = bce(logits, target)
        if kind == "bce+dice":
            prob = torch.sigmoid(logits)
            inter = (prob * target).sum(dim=(1, 2, 3))
            denom = prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
            value = value + (1 - (2 * inter + 1) / (denom + 1)).mean()
        return value

    return loss


def _predict_fn(model: nn.Module, device: torch.device):
    @torch.inference_mode()
    def predict(batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(batch[:, None], dtype=np.float32)).to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits = model(tensor)
        return torch.sigmoid(logits.float())[:, 0].cpu().numpy()

    return predict


def _validate(model, pairs, hard, config, device, loss) -> dict:
    """Val loss on tiles, and Dice/IoU of whole working-scale images (clean and hard)."""
    model.eval()
    predict = _predict_fn(model, device)
    losses, dice_clean, iou_clean, dice_hard = [], [], [], []
    method = NORMALISATIONS[config.normalisation]
    for pair, (hard_image, hard_mask) in zip(pairs, hard):
        for image, mask, dices, ious in ((local_contrast(pair.work_image, method), pair.work_mask, dice_clean, iou_clean),
                                          (local_contrast(hard_image, method), hard_mask, dice_hard, None)):
            prob = sliding_window(image, predict, config.tile_px, infer_stride(config), 32)
            truth = mask > 0.5
            pred = fill_contours(largest_component(np.where(prob > config.threshold, 255, 0).astype(np.uint8)))
            scores = compare(pred, truth)
            dices.append(scores["dice"])
            if ious is not None:
                ious.append(scores["iou"])
                p = torch.from_numpy(np.clip(prob, 1e-6, 1 - 1e-6).astype(np.float32))
                t = torch.from_numpy(mask.astype(np.float32))
                losses.append(float(nn.functional.binary_cross_entropy(p, t)))
    return {"val_loss": float(np.mean(losses)), "val_dice": float(np.mean(dice_clean)),
            "val_iou": float(np.mean(iou_clean)), "val_dice_hard": float(np.mean(dice_hard))}


def full_resolution_metrics(model: nn.Module, pairs: list[Pair], config: TrainConfig, device) -> list[dict]:
    """Per validation image: Dice, IoU, HD95 at the original size, post-processed as the model file will say."""
    predict = _predict_fn(model, device)
    rows = []
    for pair in pairs:
        work = local_contrast(pair.work_image, NORMALISATIONS[config.normalisation])
        prob = sliding_window(work, predict, config.tile_px, infer_stride(config), 32)
        full = to_full_size(prob, pair.full_mask.shape, pair.box)
        pred = postprocess(binarise(full, config.threshold), config.postprocess)
        rows.append({"id": pair.id, **compare(pred, pair.full_mask)})
    return rows


def infer_stride(config: TrainConfig) -> int:
    """Prediction stride recorded in the model: a quarter overlap (96 px for 128 px tiles, as MONAI's 0.25)."""
    return config.tile_px * 3 // 4


def _choose_split(config: TrainConfig) -> tuple[list[str], list[str], dict]:
    """Train/validation ids from the split file when given (test ids are never loaded), else a seeded split."""
    mask_ids = {p.stem for p in Path(config.masks).glob("*.png")}
    present = mask_ids & set(image_files(config.images))
    if config.split is None:
        train_ids, val_ids = split_ids(sorted(present), config.val_fraction, config.seed)
        return train_ids, val_ids, {"split": f"seeded {1 - config.val_fraction:.0%}/{config.val_fraction:.0%}"}
    split = read_split(config.split)
    train_ids = sorted(set(split["train"]) & present)
    val_ids = sorted(set(split["validation"]) & present)
    if not train_ids:
        raise TrainingDataError(f"none of the split's {len(split['train'])} train ids has a mask and an image")
    digest = content_hash(Path(config.split).read_bytes())
    return train_ids, val_ids, {"split": str(config.split), "split_sha256": digest,
                                "test_ids_excluded": len(split["test"])}


def _init_from(model: nn.Module, path: str, architecture: str) -> None:
    """Fine-tune: copy the weights of an earlier model file of the same architecture."""
    other, meta = load_model(path, "cpu")
    if meta.get("architecture") != architecture:
        raise ValueError(f"{path} is a {meta.get('architecture')} model; --init-model needs a {architecture} one")
    model.load_state_dict(other.state_dict())


def train(config: TrainConfig, progress: bool = True, log=print) -> TrainResult:
    """Train a segmenter; writes OUT/model.pt (best), OUT/last.pt, OUT/history.csv, OUT/val_metrics.csv."""
    if config.architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {config.architecture!r} is unknown; valid: {', '.join(ARCHITECTURES)}")
    if config.loss not in ("bce", "bce+dice"):
        raise ValueError("loss must be 'bce' or 'bce+dice'")
    if config.input_crop not in INPUT_CROPS or config.postprocess not in POSTPROCESSING \
            or config.normalisation not in NORMALISATIONS:
        raise ValueError(f"input_crop must be one of {', '.join(INPUT_CROPS)}, postprocess one of "
                         f"{', '.join(POSTPROCESSING)} and normalisation one of {', '.join(NORMALISATIONS)}")
    check_stride(config.tile_px, config.stride_px)
    refuse_output_overlap(config.out, input_folders(config.images, config.masks))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    device = pick_device(config.device)

    train_ids, val_ids, split_info = _choose_split(config)
    pairs, skipped = load_pairs(config.images, config.masks, config.work_size_px, keep_full=set(val_ids),
                                progress=progress, only=set(train_ids) | set(val_ids), input_crop=config.input_crop)
    by_id = {p.id: p for p in pairs}
    train_pairs = [by_id[i] for i in train_ids if i in by_id]
    val_pairs = [by_id[i] for i in val_ids if i in by_id]
    for problem in skipped.values():
        log(f"skipped: {problem}")
    if len(train_pairs) < 1:
        raise TrainingDataError("no usable image/mask pairs for training"
                                + "".join(f"\n  {p}" for p in skipped.values()))
    if not val_pairs:
        val_pairs = train_pairs[:1]
        log("note: a single usable pair: validating on the training image (metrics are not held-out)")
    hard = [hard_variant(p, config.seed) for p in val_pairs]

    encoder, depth, decoder = ARCHITECTURES[config.architecture]
    model = build_unet(encoder, depth, decoder, config.encoder_weights).to(device)
    if config.init_model and not (config.resume and (out / "last.pt").is_file()):
        _init_from(model, config.init_model, config.architecture)
        log(f"starting from the weights of {config.init_model}")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=4)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    loss_fn = _loss_fn(config.loss)
    history: list[dict] = []
    start_epoch, best_score, bad_epochs = 0, -1.0, 0
    last_path, model_path = out / "last.pt", out / "model.pt"
    if config.resume and last_path.is_file():
        state = torch.load(last_path, map_location=device, weights_only=True)
        if state["config"]["architecture"] != config.architecture:
            raise ValueError(f"{last_path} was trained as {state['config']['architecture']}, "
                             f"not {config.architecture}; use the same --architecture to resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_score, bad_epochs = state["epoch"] + 1, state["best_score"], state["bad_epochs"]
        history = state["history"]
        log(f"resuming after epoch {state['epoch'] + 1} (best mean Dice {best_score:.4f})")

    meta = {
        "architecture": config.architecture, "encoder": encoder, "encoder_depth": depth,
        "decoder_channels": list(decoder), "encoder_weights": config.encoder_weights or "none",
        "tile_px": config.tile_px, "train_stride_px": config.stride_px, "infer_stride_px": infer_stride(config),
        "work_size_px": config.work_size_px, "normalisation": NORMALISATIONS[config.normalisation],
        "threshold": config.threshold,
        "input_crop": config.input_crop, "postprocess": config.postprocess,
        "loss": config.loss, "seed": config.seed, "augment": config.augment,
        "train_ids": [p.id for p in train_pairs], "val_ids": [p.id for p in val_pairs], **split_info,
        "init_model": config.init_model or "none",
        "mask_sha256": {p.id: p.mask_sha256 for p in pairs},
        "handprep": handprep.__version__, "torch": str(torch.__version__), "python": platform.python_version(),
    }
    started = time.time()
    stopped = ""
    epochs = tqdm(range(start_epoch, config.epochs), desc="segment-train", unit="epoch", disable=not progress,
                  initial=start_epoch, total=config.epochs)
    for epoch in epochs:
        model.train()
        patches, targets = _epoch_patches(train_pairs, config, epoch)
        order = np.random.default_rng([config.seed, epoch, 999]).permutation(len(patches))
        losses = []
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            x = torch.from_numpy(np.ascontiguousarray(patches[index][:, None], dtype=np.float32)).to(device)
            y = torch.from_numpy(np.ascontiguousarray(targets[index][:, None], dtype=np.float32)).to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                loss = loss_fn(model(x).float(), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.item())
        scores = _validate(model, val_pairs, hard, config, device, loss_fn)
        # with augmentation, robustness counts as much as clean accuracy; without, only clean
        score = (scores["val_dice"] + scores["val_dice_hard"]) / 2 if config.augment else scores["val_dice"]
        scheduler.step(score)
        row = {"epoch": epoch + 1, "train_loss": round(float(np.mean(losses)), 5),
               **{k: round(v, 5) for k, v in scores.items()}, "lr": optimizer.param_groups[0]["lr"],
               "seconds": round(time.time() - started, 1)}
        history.append(row)
        improved = score > best_score
        if improved:
            best_score, bad_epochs = score, 0
            save_model(model_path, model, {**meta, "epoch": epoch + 1, "history": history})
        else:
            bad_epochs += 1
        epochs.set_postfix(loss=row["train_loss"], dice=row["val_dice"], hard=row["val_dice_hard"])
        log(f"epoch {epoch + 1:3d}  train {row['train_loss']:.4f}  val {row['val_loss']:.4f}  "
            f"dice {row['val_dice']:.4f}  iou {row['val_iou']:.4f}  hard dice {row['val_dice_hard']:.4f}"
            f"{'  *' if improved else ''}")
        save_checkpoint(last_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                     "scheduler": scheduler.state_dict(), "epoch": epoch, "best_score": best_score,
                                     "bad_epochs": bad_epochs, "history": history,
                                     "config": dataclasses.asdict(config)})
        write_rows_csv(out / "history.csv", history)
        if bad_epochs >= config.patience:
            stopped = f"early stop: no improvement for {config.patience} epochs"
            break
        if config.max_minutes is not None and (time.time() - started) / 60 > config.max_minutes:
            stopped = f"time budget of {config.max_minutes} min reached"
            break
    epochs.close()
    if stopped:
        log(stopped)

    # final, honest numbers: the best model on the held-out images at full resolution
    best, best_meta = load_model(model_path, device)
    rows = full_resolution_metrics(best, val_pairs, config, device)
    summary = summarise(rows)
    write_metrics_csv(out / "val_metrics.csv", rows)
    best_meta["metrics"] = {"val_full_resolution": summary,
                            "best_epoch": best_meta["epoch"],
                            "val_dice_work_scale": best_meta["history"][best_meta["epoch"] - 1]["val_dice"],
                            "val_dice_hard_work_scale": best_meta["history"][best_meta["epoch"] - 1]["val_dice_hard"]}
    save_model(model_path, best, best_meta)
    atomic_write_text(out / "model.json", json.dumps({k: v for k, v in best_meta.items() if k != "history"},
                                                     indent=2))
    return TrainResult(model_path, history, best_meta["metrics"], skipped, stopped)

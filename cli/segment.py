"""Segmentation commands: segment-train, segment, segment-eval, model-info (registered in cli/main.py)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

EXIT_BAD_INPUT = 2


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def segment_train(
    images: List[Path] = typer.Option(..., help="Folder of radiographs (repeat for several, e.g. rsna60 and rsna-raw).",
                                      exists=True, file_okay=False),
    masks: Path = typer.Option(..., help="Folder of hand masks named like the images (e.g. masks/).", exists=True,
                               file_okay=False),
    out: Path = typer.Option(..., "--out", help="Folder for model.pt (best), last.pt (resume), history.csv, val_metrics.csv."),
    split: Optional[Path] = typer.Option(None, help="Split file (splits_final.json): train on 'train', select on "
                                         "'validation'; 'test' is never read. Without it: a seeded split.",
                                         exists=True, dir_okay=False),
    architecture: str = typer.Option("mobilenetv3_small", help="U-Net encoder preset: mobilenetv3_small, "
                                     "efficientnet_lite0, resnet18, resnet34."),
    work_size_px: int = typer.Option(384, min=64, help="Working scale: long side in pixels before tiling."),
    tile_px: int = typer.Option(128, min=32, help="Patch size in pixels."),
    stride_px: int = typer.Option(64, min=8, help="Training patch stride in pixels (patches overlap; ≤ tile)."),
    epochs: int = typer.Option(50, min=1, help="Maximum epochs."),
    batch_size: int = typer.Option(32, min=1, help="Patches per batch."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    patience: int = typer.Option(10, min=1, help="Early stopping: epochs without improvement."),
    val_fraction: float = typer.Option(0.2, min=0.0, max=0.9, help="Without --split: share held out for validation."),
    seed: int = typer.Option(0, help="Seed for the split, augmentation and initialisation."),
    loss: str = typer.Option("bce", help="bce or bce+dice."),
    augment: bool = typer.Option(True, help="Augment (geometry, backgrounds, frames, borders, markers, exposure)."),
    encoder_weights: Optional[str] = typer.Option(None, help="None (offline), imagenet (downloads), or a local .pt file."),
    init_model: Optional[str] = typer.Option(None, help="Start from this model file's weights (fine-tune; same architecture)."),
    input_crop: str = typer.Option("film_box", help="film_box: show the model only the film inside black scanner "
                                   "padding; none: the whole image."),
    normalisation: str = typer.Option("percentile", help="percentile (0.5-99.5 stretch) or percentile+clahe "
                                      "(then CLAHE, for faint films); recorded in the model file."),
    postprocess: str = typer.Option("largest_region", help="Recorded in the model file for inference: "
                                    "largest_region (keep the largest region, holes filled) or fill_5pct (drop "
                                    "regions under 5 % of the largest)."),
    device: str = typer.Option("auto", help="auto (CUDA if available), cpu or cuda."),
    resume: bool = typer.Option(False, help="Continue from OUT/last.pt."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop after this many minutes, keeping the best model."),
) -> None:
    """Train the patch U-Net from hand masks; the best model lands in OUT/model.pt."""
    from handprep.segment.train import TrainConfig, TrainingDataError, train

    config = TrainConfig(images=[str(i) for i in images], masks=str(masks), out=str(out), architecture=architecture,
                         encoder_weights=encoder_weights, work_size_px=work_size_px, tile_px=tile_px,
                         stride_px=stride_px, batch_size=batch_size, epochs=epochs, lr=lr, patience=patience,
                         val_fraction=val_fraction, seed=seed, loss=loss, augment=augment, device=device,
                         max_minutes=max_minutes, resume=resume, split=str(split) if split else None,
                         init_model=init_model, input_crop=input_crop, postprocess=postprocess,
                         normalisation=normalisation)
    try:
        result = train(config, log=typer.echo)
    except (TrainingDataError, ValueError) as exc:
        _fail(str(exc))
    full = result.metrics["val_full_resolution"]
    typer.echo(f"best epoch {result.metrics['best_epoch']}: validation Dice {full['dice']['mean']:.4f} "
               f"(worst {full['dice']['worst']:.4f}), IoU {full['iou']['mean']:.4f}, "
               f"HD95 {full['hd95_px']['mean']:.1f} px over {full['images']} images → {result.model_path}")


def segment(
    images: Path = typer.Argument(..., help="Folder of radiographs.", exists=True, file_okay=False),
    out: Path = typer.Option(..., "--out", help="Folder for masks: <stem>.png, 0/255, same size as the image."),
    model: str = typer.Option("default", help="default (shipped) or a model file from segment-train."),
    stride_px: Optional[int] = typer.Option(None, min=8, help="Tile stride at the working scale (default: the "
                                            "model's; at most the tile size)."),
    window: str = typer.Option("constant", help="Averaging of overlapping tiles: constant or gaussian."),
    threshold: Optional[float] = typer.Option(None, help="Probability threshold (default: the model's)."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Tiles per forward pass (default 16 on CPU, 512 on CUDA)."),
    images_per_batch: Optional[int] = typer.Option(None, min=1, help="Images whose tiles share forward passes "
                                                   "(default 1 on CPU, 32 on CUDA)."),
    workers: Optional[int] = typer.Option(None, min=0, help="Decoding/writing threads (default 0 on CPU, up to 8 on CUDA)."),
    device: str = typer.Option("auto", help="auto (CUDA if available), cpu or cuda."),
    fill: bool = typer.Option(True, help="Fill holes and drop small stray regions (fill_contours)."),
    overwrite: bool = typer.Option(False, help="Redo masks that already exist (default: resume)."),
) -> None:
    """Segment the hand in every radiograph of a folder; doubtful masks are listed in OUT/segment_quality.csv."""
    from handprep.segment.batch import QUALITY_CSV, segment_folder
    from handprep.segment.model import ModelFileError

    try:
        result = segment_folder(images, out, model, stride_px, window, threshold, batch_size, device, fill,
                                overwrite=overwrite, images_per_batch=images_per_batch, workers=workers)
    except (ModelFileError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"{len(result.written)} masks written, {len(result.skipped)} already there, "
               f"{len(result.failed)} failed → {out}")
    if result.doubtful:
        typer.secho(f"  {len(result.doubtful)} doubtful (see {out / QUALITY_CSV}): "
                    f"{', '.join(result.doubtful[:20])}{' …' if len(result.doubtful) > 20 else ''}",
                    fg=typer.colors.YELLOW)
    for problem in result.failed.values():
        typer.secho(f"  failed: {problem}", fg=typer.colors.RED)
    raise typer.Exit(1 if result.failed else 0)


def model_info(model: str = typer.Argument("default", help="default (shipped) or a model file.")) -> None:
    """Show what a segmenter model file holds: architecture, scale, split, training data and metrics."""
    from handprep.segment.model import ModelFileError, read_model_file, resolve_model_path

    path = resolve_model_path(model)
    try:
        meta = read_model_file(path)["meta"]
    except ModelFileError as exc:
        _fail(str(exc))
    typer.echo(f"{path}")
    for key in ("architecture", "encoder", "encoder_weights", "init_model", "work_size_px", "tile_px",
                "train_stride_px", "infer_stride_px", "normalisation", "input_crop", "postprocess", "threshold", "loss", "seed", "epoch",
                "split", "split_sha256", "split_note", "handprep", "torch"):
        if key in meta:
            typer.echo(f"  {key}: {meta[key]}")
    typer.echo(f"  trained on {len(meta.get('train_ids', []))} images, validated on {len(meta.get('val_ids', []))}"
               f"{', test ids never read: ' + str(meta['test_ids_excluded']) if 'test_ids_excluded' in meta else ''}; "
               f"{len(meta.get('mask_sha256', {}))} mask hashes recorded")
    metrics = meta.get("metrics", {})
    full = metrics.get("val_full_resolution")
    if full and full.get("images"):
        typer.echo(f"  validation (full resolution): Dice {full['dice']['mean']:.4f} (worst {full['dice']['worst']:.4f}), "
                   f"IoU {full['iou']['mean']:.4f}, HD95 {full['hd95_px']['mean']:.1f} px mean / "
                   f"{full['hd95_px']['median']:.1f} px median")
    for name, block in metrics.get("evaluations", {}).items():
        typer.echo(f"  {name}: {block}")


def segment_eval(
    masks: Path = typer.Option(..., help="Folder of reviewed (ground-truth) masks.", exists=True, file_okay=False),
    images: Optional[List[Path]] = typer.Option(None, help="Radiograph folder(s) (repeatable): run the model and "
                                                "the baseline on the subset's images.", exists=True, file_okay=False),
    split: Optional[Path] = typer.Option(None, help="Split file (splits_final.json).", exists=True, dir_okay=False),
    subset: str = typer.Option("test", help="Subset of the split: train, validation or test."),
    model: str = typer.Option("default", help="default (shipped) or a model file."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the CSV, JSON summary and worst overlays."),
    worst: int = typer.Option(8, min=0, help="How many worst cases to draw."),
    pred: Optional[Path] = typer.Option(None, help="Instead of running a model: score this folder of masks.",
                                        exists=True, file_okay=False),
    device: str = typer.Option("auto", help="auto (CUDA if available), cpu or cuda."),
) -> None:
    """Dice, IoU and HD95 (MONAI's definitions) per image and in summary, the baseline beside the model.

    With --images: runs the model and the trivial baseline (threshold_mask) on the --subset of
    --split, writes OUT/segment_eval_<subset>.csv/.json and OUT/worst_<subset>/ overlays.
    With --pred: scores an existing folder of masks against --masks.
    """
    if pred is not None:
        return _score_folder(pred, masks, out)
    if not images:
        _fail("give --images (run the model on the split's images) or --pred (score a folder of masks)")
    from handprep.segment.evaluate import evaluate_subset
    from handprep.segment.model import ModelFileError
    from handprep.segment.train import TrainingDataError

    out = out or Path(f"segment_eval_{subset}")
    try:
        report = evaluate_subset(images, masks, out, split, subset, model, device, worst)
    except (ModelFileError, TrainingDataError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"{'id':>8s} {'dice':>7s} {'hd95 px':>8s} {'gross':>5s} {'base dice':>9s}  flags")
    for row in report.rows:
        if row["problem"]:
            typer.secho(f"{row['id']:>8s}  {row['problem']}", fg=typer.colors.RED)
        else:
            typer.echo(f"{row['id']:>8s} {row['dice']:7.4f} {row['hd95_px']:8.1f} {'yes' if row['gross'] else '':>5s} "
                       f"{row['baseline_dice']:9.4f}  {row['flags']}")
    groups = [(subset, {"model": report.model, "baseline": report.baseline, "gross_failures": report.gross,
                        "baseline_gross_failures": report.baseline_gross})]
    groups += [(f"{subset} from {source}", block) for source, block in report.by_source.items()]
    for label, block in groups:
        for name in ("model", "baseline"):
            summary, gross = block[name], block["gross_failures" if name == "model" else "baseline_gross_failures"]
            if summary["images"]:
                typer.echo(f"{label} {name:>8s}: Dice mean {summary['dice']['mean']:.4f} worst "
                           f"{summary['dice']['worst']:.4f}, HD95 mean {summary['hd95_px']['mean']:.1f} px worst "
                           f"{summary['hd95_px']['worst']:.1f} px, gross failures {len(gross)}/{summary['images']}")
    problems = sum(1 for r in report.rows if r["problem"])
    typer.echo(f"per-image CSV, summary and {len(report.overlays)} worst overlays → {out}"
               f"{f' ({problems} problems)' if problems else ''}")
    raise typer.Exit(1 if problems else 0)


def _score_folder(pred: Path, masks: Path, out: Optional[Path]) -> None:
    from handprep.io import refuse_output_overlap
    from handprep.segment.metrics import evaluate_folders, summarise, write_metrics_csv

    out = out or Path("segment_eval_pred")
    try:
        refuse_output_overlap(out, {"prediction folder": pred, "mask folder": masks})
        rows = evaluate_folders(pred, masks)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    csv_path = out / "segment_eval.csv"
    write_metrics_csv(csv_path, rows)
    typer.echo(f"{'id':>12s} {'dice':>7s} {'iou':>7s} {'hd95 px':>8s}")
    for row in rows:
        if row.get("problem"):
            typer.secho(f"{row['id']:>12s}  {row['problem']}", fg=typer.colors.RED)
        else:
            typer.echo(f"{row['id']:>12s} {row['dice']:7.4f} {row['iou']:7.4f} {row['hd95_px']:8.1f}")
    summary = summarise(rows)
    if summary["images"]:
        typer.echo(f"{'mean':>12s} {summary['dice']['mean']:7.4f} {summary['iou']['mean']:7.4f} "
                   f"{summary['hd95_px']['mean']:8.1f}   ({summary['images']} images, {summary['problems']} problems)")
        typer.echo(f"{'worst':>12s} {summary['dice']['worst']:7.4f} {summary['iou']['worst']:7.4f} "
                   f"{summary['hd95_px']['worst']:8.1f}")
    typer.echo(f"per-image metrics → {csv_path}")
    raise typer.Exit(1 if summary["problems"] else 0)

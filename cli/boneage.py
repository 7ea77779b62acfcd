"""Bone-age commands: ``train-resnet34``, ``predict``, ``evaluate`` (registered in cli/main.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXIT_BAD_INPUT, EXIT_FAILED_IMAGES = 2, 1


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        _fail(f"{what} must be comma-separated numbers, got {text!r}")


def train_resnet34(
    dataset: Path = typer.Argument(..., help="Output folder of 'handprep run' (holds dataset/images.npy)."),
    labels: Path = typer.Option(..., "--labels", help="Labels CSV id,boneage,male[,split]."),
    out: Path = typer.Option(..., "--out", help="Run folder: model.pt, last.pt, metrics, plots."),
    backbone: str = typer.Option("resnet34", help="resnet34 | resnet50 | densenet121 | resnet18."),
    sex_mode: str = typer.Option("scalar", help="How sex enters: scalar | onehot | embedding (16→32)."),
    size_px: Optional[int] = typer.Option(None, help="Network input size (default: the dataset's size)."),
    epochs: int = typer.Option(100, help="Maximum epochs."),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    loss: str = typer.Option("mae", help="mae | mse | huber."),
    scheduler: str = typer.Option("plateau", help="plateau (×0.1 after 10 flat epochs) | cosine."),
    warmup_epochs: int = typer.Option(3, help="Linear learning-rate warm-up (both schedules)."),
    patience: int = typer.Option(30, help="Early stopping: epochs without a better validation MAE."),
    ema_decay: float = typer.Option(0.99, help="Weight averaging (validated and shipped); 0 = off."),
    hidden: int = typer.Option(2048, help="Units in each of the two fully connected layers."),
    dropout: float = typer.Option(0.5),
    split: str = typer.Option("0.7,0.15,0.15", help="train,val,test fractions (stratified by age, seeded)."),
    split_file: Optional[Path] = typer.Option(None, help="Reuse a split.csv (id,split) instead."),
    seed: int = typer.Option(0),
    augment: bool = typer.Option(True, help="Rotation, translation, zoom, contrast."),
    weighted_augment: bool = typer.Option(True, help="Extra augmented copies for rare bone ages."),
    age_bins: str = typer.Option("0,24,48,72,96,120,144,168,192,216,300", help="Bin edges in months."),
    extra_fraction: float = typer.Option(1.0, help="Weighted copies per epoch, as a fraction of the training set."),
    workers: int = typer.Option(0, help="DataLoader worker processes."),
    device: str = typer.Option("auto", help="auto (CUDA if present) | cpu | cuda."),
    imagenet_weights: Optional[Path] = typer.Option(None, help="Local torchvision ImageNet state dict."),
    init_from: Optional[Path] = typer.Option(None, help="Fine-tune from a model.pt or last.pt."),
    resume: bool = typer.Option(False, "--resume", help="Continue OUT/last.pt exactly (same settings)."),
    drop_unlabelled: bool = typer.Option(False, help="Train without images that have no label row."),
    tta_views: int = typer.Option(8, help="Test-time views per image for the prediction and its interval."),
    interval_level: float = typer.Option(0.9, help="Nominal coverage of the prediction intervals."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop after this long (best model kept)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars (off for log files)."),
) -> None:
    """Train the bone-age regressor on a dataset written by 'handprep run'."""
    from handprep.boneage.data import BoneAgeDataError
    from handprep.boneage.model import ModelFileError
    from handprep.boneage.train import TrainConfig, train

    config = TrainConfig(
        dataset=str(dataset), labels=str(labels), out=str(out), backbone=backbone, sex_mode=sex_mode, hidden=hidden,
        dropout=dropout, size_px=size_px, epochs=epochs, batch_size=batch_size, lr=lr, loss=loss, scheduler=scheduler,
        warmup_epochs=warmup_epochs, patience=patience, ema_decay=ema_decay,
        split_fractions=_floats(split, "--split"), split_file=str(split_file) if split_file else None, seed=seed,
        augment=augment, weighted_augment=weighted_augment, age_bins=_floats(age_bins, "--age-bins"),
        extra_fraction=extra_fraction, workers=workers, device=device,
        imagenet_weights=str(imagenet_weights) if imagenet_weights else None,
        init_from=str(init_from) if init_from else None, drop_unlabelled=drop_unlabelled, tta_views=tta_views,
        interval_level=interval_level, max_minutes=max_minutes, threads=threads)
    try:
        result = train(config, resume=resume, progress=progress, log=typer.echo)
    except (BoneAgeDataError, ModelFileError, ValueError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail(f"interrupted; continue with the same command plus --resume (from {out / 'last.pt'})", 130)
    typer.echo(f"model → {result.model_path}; metrics, predictions and plots in {result.out}")


def predict(
    model: Path = typer.Argument(..., help="model.pt from train-resnet34."),
    images: Path = typer.Argument(..., help="Folder, glob or file of raw radiographs."),
    out: Path = typer.Option(..., "--out", help="Predictions CSV."),
    sex_from: Optional[Path] = typer.Option(None, "--sex-from", help="CSV with id,male (a labels CSV works)."),
    sex: Optional[str] = typer.Option(None, "--sex", help="M or F for every image."),
    device: str = typer.Option("auto"),
    workers: int = typer.Option(1, help="Processes for the preprocessing chain (the regressor runs in one)."),
) -> None:
    """Bone age with an interval for raw radiographs, through the model's own preprocessing chain."""
    from handprep.boneage.data import BoneAgeDataError
    from handprep.boneage.model import ModelFileError
    from handprep.boneage.predict import predict_images, read_sex_table
    from handprep.pipeline.labels import parse_male

    if (sex_from is None) == (sex is None):
        _fail("give the sex of the children with exactly one of --sex-from CSV or --sex M|F")
    male = None if sex is None else parse_male(sex)
    if sex is not None and male is None:
        _fail(f"--sex {sex!r}: use M or F")
    try:
        table = read_sex_table(sex_from) if sex_from else None
        rows = predict_images(model, images, out, table, male, device=device, workers=workers)
    except (BoneAgeDataError, ModelFileError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    bad = [r for r in rows if r["status"] != "ok"]
    typer.echo(f"{len(rows) - len(bad)} of {len(rows)} predicted → {out}")
    for row in bad[:20]:
        typer.secho(f"  {row['status']:8s} {row['path']}: {row['reason']}", fg=typer.colors.YELLOW)
    raise typer.Exit(EXIT_FAILED_IMAGES if any(r["status"] == "failed" for r in rows) else 0)


def evaluate(
    model: Path = typer.Argument(..., help="model.pt from train-resnet34."),
    dataset: Path = typer.Argument(..., help="Output folder of 'handprep run' with the same chain."),
    labels: Path = typer.Option(..., "--labels", help="Labels CSV id,boneage,male[,split]."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for metrics.json, predictions.csv, plots."),
    split_file: Optional[Path] = typer.Option(None, help="split.csv of a run, to score one split."),
    split: Optional[str] = typer.Option(None, help="train | val | test (needs a split column or --split-file)."),
    drop_unlabelled: bool = typer.Option(False),
    device: str = typer.Option("auto"),
) -> None:
    """Metrics (overall, by sex, by age band), interval coverage and plots on a labelled dataset."""
    from handprep.boneage.data import BoneAgeDataError
    from handprep.boneage.evaluate import evaluate as run_evaluation
    from handprep.boneage.model import ModelFileError

    out = out or Path(model).parent / "evaluation"
    try:
        m = run_evaluation(model, dataset, labels, out, split_file, split, device, drop_unlabelled, log=typer.echo)
    except (BoneAgeDataError, ModelFileError, ValueError) as exc:
        _fail(str(exc))
    a = m["all"]
    typer.echo(f"{a['n']} images: MAE {a['mae']:.2f} months, RMSE {a['rmse']:.2f}, R² {a['r2'] or 0:.3f}, "
               f"within 12 months {a['within_12']:.1%}, MAPE {a['mape'] or 0:.1f} %")
    if "baseline_train_mean" in m:
        typer.echo(f"no-skill (training mean) MAE {m['baseline_train_mean']['mae']:.2f} months")
    for name, s in {**m["by_sex"], **m["by_band"]}.items():
        if s["n"]:
            typer.echo(f"  {name:>8s}: n {s['n']:4d}  MAE {s['mae']:6.2f}")
    if "interval_coverage" in m:
        typer.echo(f"{m['interval']['level']:.0%} intervals cover {m['interval_coverage']:.1%}")
    typer.echo(f"→ {out}")

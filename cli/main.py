"""handprep command line: parses options, calls the library, prints results. No logic of its own."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Hand-wrist radiographs → hand-masked, contrast-normalised, uniformly sized datasets "
         "(and the models that make and use them).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_FAILED_IMAGES, EXIT_BAD_CONFIG, EXIT_LOCKED, EXIT_INTERRUPTED = 1, 2, 3, 130


def _fail(message: str, code: int = EXIT_BAD_CONFIG) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _load(pipeline: Path, **overrides):
    from handprep.pipeline.config import ConfigError, load_config

    try:
        return load_config(pipeline, **overrides)
    except ConfigError as exc:
        _fail(str(exc))


def _print_summary(summary, show_failed: int = 20) -> None:
    counts = summary.counts
    total = counts["ok"] + counts["dropped"] + counts["failed"]
    typer.echo(f"{total} images in {summary.seconds:.1f} s: {counts['ok']} ok, {counts['dropped']} dropped, "
               f"{counts['failed']} failed ({counts['cached']} from cache) → {summary.output}")
    problems = [r for r in summary.rows if r["status"] != "ok"]
    for row in sorted(problems, key=lambda r: r["id"])[:show_failed]:
        colour = typer.colors.YELLOW if row["status"] == "dropped" else typer.colors.RED
        typer.secho(f"  {row['status']:8s} {row['path']}: {row['reason']}", fg=colour)
    if len(problems) > show_failed:
        typer.echo(f"  … and {len(problems) - show_failed} more: see {summary.output / 'manifest.csv'}")
    if summary.dataset and summary.dataset.get("packed"):
        d = summary.dataset
        typer.echo(f"dataset: {d['packed']}×{'×'.join(map(str, d['shape']))} {d['dtype']} → "
                   f"{summary.output / 'dataset' / 'images.npy'} (+ index.csv)")
    for message in summary.messages:
        typer.secho(f"note: {message}", fg=typer.colors.YELLOW)


def _run(config) -> None:
    from handprep.pipeline.labels import LabelsError
    from handprep.pipeline.lock import OutputLockedError
    from handprep.pipeline.runner import OutputError, run_pipeline

    try:
        summary = run_pipeline(config)
    except (LabelsError, OutputError, FileNotFoundError) as exc:
        _fail(str(exc))
    except OutputLockedError as exc:
        _fail(str(exc), EXIT_LOCKED)
    _print_summary(summary)
    if summary.interrupted or summary.stopped:
        typer.secho(f"manifest: {summary.output / 'manifest.csv'}", fg=typer.colors.YELLOW, err=True)
    raise typer.Exit(summary.exit_code)


_INPUT = typer.Option(None, "--input", "-i", help="Folder or glob of radiographs (overrides input.images).")
_OUTPUT = typer.Option(None, "--output", "-o", help="Output folder (overrides output); must not overlap an input.")
_MASKS = typer.Option(None, help="Folder of hand masks named by image stem (overrides input.masks).")
_LABELS = typer.Option(None, help="Labels CSV id,boneage,male (overrides input.labels).")


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="Pipeline YAML (e.g. pipelines.yaml).", exists=True, dir_okay=False),
    input: Optional[str] = _INPUT,
    output: Optional[Path] = _OUTPUT,
    masks: Optional[Path] = _MASKS,
    labels: Optional[Path] = _LABELS,
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=0, help="Parallel workers; 0 = all cores (overrides workers)."),
    backend: Optional[str] = typer.Option(None, help="loky | threading | sequential | dask (overrides backend)."),
    scheduler: Optional[str] = typer.Option(None, help="dask.distributed scheduler address, e.g. tcp://host:8786 (implies --backend dask)."),
) -> None:
    """Run the preprocessing chain over a folder into a cached dataset.

    Writes OUTPUT/images/*.png, masks/*.png, manifest.csv (one row per input entry: status
    ok/dropped/failed/skipped/pending and the reason), run.json (resolved config, versions, model
    hashes, seed) and dataset/images.npy + index.csv. Re-running reuses the cache; an interrupted
    run resumes. Exit codes: 0 no image failed, 1 some failed, 2 invalid config/paths (nothing
    read), 3 output folder busy, 4 output disk full or unwritable mid-run, 130 interrupted
    (Ctrl-C), 143 terminated (SIGTERM).
    """
    config = _load(pipeline, images=input, output=output, masks=masks, labels=labels, workers=workers,
                   backend="dask" if scheduler and not backend else backend, scheduler=scheduler)
    _run(config)


@app.command()
def check(
    pipeline: Path = typer.Argument(..., help="Pipeline YAML to validate.", exists=True, dir_okay=False),
    input: Optional[str] = _INPUT,
    output: Optional[Path] = _OUTPUT,
    masks: Optional[Path] = _MASKS,
    labels: Optional[Path] = _LABELS,
) -> None:
    """Validate a pipeline (stages, parameters, paths, labels, output) as 'run' would, reading no image."""
    from handprep.pipeline.labels import LabelsError, read_labels

    config = _load(pipeline, images=input, output=output, masks=masks, labels=labels)
    if config.input.labels:
        try:
            read_labels(config.input.labels)
        except LabelsError as exc:
            _fail(str(exc))
    typer.echo(f"{pipeline}: valid — {len(config.stages)} stages: " + " → ".join(s.name for s in config.stages))
    typer.echo(f"  input {config.input.images} → output {config.output}")


@app.command()
def stages() -> None:
    """List every stage with its parameters (type, range, default) and what it does."""
    from handprep.stages import load_stages

    for stage in sorted(load_stages().values(), key=lambda s: s.name):
        typer.secho(f"{stage.name}  [{stage.kind}{', needs a mask' if stage.needs_mask else ''}]", bold=True)
        typer.echo(f"    {stage.doc}")
        for param in stage.params.values():
            typer.echo(f"    - {param.describe()}")


@app.command()
def inspect(
    pipeline: Path = typer.Argument(..., help="Pipeline YAML.", exists=True, dir_okay=False),
    out: Path = typer.Option(..., "--out", help="Contact sheet PNG to write."),
    input: Optional[str] = typer.Option(None, "--input", "-i", help="Folder or glob of radiographs (overrides input.images)."),
    masks: Optional[Path] = typer.Option(None, help="Mask folder (overrides input.masks)."),
    n: int = typer.Option(4, min=1, max=50, help="Number of images, spread over the input."),
    ids: Optional[list[str]] = typer.Option(None, "--id", help="Image id (file stem) to show; repeat for several."),
    cell_px: int = typer.Option(256, min=64, max=1024, help="Size of each cell in pixels."),
) -> None:
    """Write a contact sheet: each image's input and every stage's result side by side."""
    from handprep.inspect import contact_sheet, pick_cases
    from handprep.io import OutputOverlapError, refuse_output_overlap, write_png

    config = _load(pipeline, images=input, masks=masks)
    try:
        refuse_output_overlap(out, {"input folder": config.input.images, "mask folder": config.input.masks})
        cases = pick_cases(config, n, ids)
    except OutputOverlapError as exc:
        _fail(str(exc))
    except (KeyError, FileNotFoundError) as exc:
        _fail(str(exc.args[0]))
    write_png(out, contact_sheet(config, cases, cell_px))
    typer.echo(f"contact sheet of {len(cases)} images × {len(config.stages) + 1} columns → {out}")


@app.command()
def demo(
    out: Path = typer.Option(Path("handprep-demo"), "--out", help="Folder for the phantoms and the dataset."),
    n: int = typer.Option(12, min=1, max=10000, help="Number of phantom radiographs (3 awkward variants are added)."),
    workers: int = typer.Option(0, "--workers", "-w", min=0, help="Parallel workers; 0 = all cores."),
    pipeline: Optional[Path] = typer.Option(None, help="Pipeline YAML (default: the shipped reference chain)."),
) -> None:
    """Generate phantom radiographs and run the reference chain on them (no data of your own needed)."""
    from handprep.demo import run_demo

    result = run_demo(out, n=n, workers=workers, pipeline=pipeline)
    typer.echo(f"phantoms (images, masks, labels.csv) → {result.phantoms}")
    _print_summary(result.summary)
    typer.echo(f"contact sheet → {result.sheet}")
    raise typer.Exit(result.summary.exit_code)


@app.command()
def phantoms(
    out: Path = typer.Argument(..., help="Folder to write images/, masks/ and labels.csv into."),
    n: int = typer.Option(20, min=1, help="Number of phantoms."),
    seed: int = typer.Option(0, help="Random seed (same seed, same phantoms)."),
    height: int = typer.Option(1040, min=64, help="Height in pixels."),
    width: int = typer.Option(800, min=64, help="Width in pixels."),
    bits: int = typer.Option(8, help="8, 12 or 16 bits per pixel."),
) -> None:
    """Write phantom hand radiographs with exact masks and labels (for trying and testing)."""
    from handprep.synth import write_phantom_set

    if bits not in (8, 12, 16):
        _fail("--bits must be 8, 12 or 16")
    made = write_phantom_set(out, n=n, seed=seed, height=height, width=width, bits=bits)
    typer.echo(f"{len(made['ids'])} phantoms → {made['images']}, masks → {made['masks']}, labels → {made['labels']}")


masks_app = typer.Typer(help="Make hand masks: import annotation exports, propose drafts to review.",
                        no_args_is_help=True)
app.add_typer(masks_app, name="masks")


@masks_app.command("import")
def masks_import(
    exports: Path = typer.Argument(..., help="Folder of annotation-tool exports (hand painted in a colour, or colour masks).",
                                   exists=True, file_okay=False),
    out: Path = typer.Option(..., "--out", help="Folder for the binary masks (<stem>.png, 0/255)."),
    colour: str = typer.Option("red", help="Colour the hand was painted in: red, green, blue, yellow, magenta, cyan."),
    images: Optional[Path] = typer.Option(None, help="Radiograph folder: each mask must match its image's size."),
    fill: bool = typer.Option(True, help="Fill holes inside the painted hand."),
    largest: bool = typer.Option(True, help="Keep only the largest painted region."),
    min_strength: float = typer.Option(40.0, help="Minimum colour strength in grey levels (lower for faint paint)."),
) -> None:
    """Convert annotation exports to binary masks; list every file that could not be converted."""
    from handprep.segment.drafts import import_painted

    try:
        result = import_painted(exports, out, colour, images, fill, largest, min_strength)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"{len(result.converted)} masks → {out}")
    for problem in result.problems.values():
        typer.secho(f"  not converted: {problem}", fg=typer.colors.RED)
    raise typer.Exit(1 if result.problems else 0)


@masks_app.command("propose")
def masks_propose(
    images: Path = typer.Argument(..., help="Folder of radiographs to draft masks for.", exists=True, file_okay=False),
    out: Path = typer.Option(..., "--out", help="Folder for drafts; review material goes to OUT/review/."),
    method: str = typer.Option("threshold", help="threshold (classical) or model (the U-Net)."),
    model: str = typer.Option("default", help="Model for --method model: default or a model file."),
    skip_existing: Optional[Path] = typer.Option(None, help="Mask folder: images that already have a mask there are skipped."),
) -> None:
    """Draft masks for unlabelled images and write review sheets, so a person only accepts or fixes drafts.

    Open OUT/review/sheet_*.png (flagged drafts first) and OUT/review/<id>.png; copy accepted
    drafts from OUT into your masks folder; fix or redraw the rest.
    """
    from handprep.segment.drafts import propose
    from handprep.segment.model import ModelFileError

    try:
        result = propose(images, out, method, model, skip_existing)
    except (ValueError, ModelFileError) as exc:
        _fail(str(exc))
    typer.echo(f"{result['drafted']} drafts → {out} ({result['flagged']} flagged for a closer look, "
               f"{result['skipped']} skipped); review sheets: {out / 'review'}")
    for problem in result["problems"].values():
        typer.secho(f"  not drafted: {problem}", fg=typer.colors.RED)


# segmentation commands (cli/segment.py)
from cli import segment as _segment  # noqa: E402

app.command("segment-train")(_segment.segment_train)
app.command("segment")(_segment.segment)
app.command("segment-eval")(_segment.segment_eval)
app.command("model-info")(_segment.model_info)


from cli.landmarks import landmarks as _landmarks  # noqa: E402  (issue 8)

app.command("landmarks")(_landmarks)


# bone-age regressor (cli/boneage.py)
from cli import boneage as _boneage  # noqa: E402

app.command("train-resnet34")(_boneage.train_resnet34)
app.command("predict")(_boneage.predict)
app.command("evaluate")(_boneage.evaluate)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

"""The embedded default: phantom radiographs through the reference chain, no user data needed."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from handprep.io import write_png
from handprep.inspect import contact_sheet, pick_cases
from handprep.pipeline.config import load_config
from handprep.pipeline.runner import RunSummary, run_pipeline
from handprep.synth import write_phantom_set

DEFAULT_PIPELINE = Path(__file__).parent / "defaults" / "pipelines.yaml"

# Variants that show the chain's handling of awkward inputs.
DEMO_VARIANTS = {
    "lowcontrast": {"low_contrast": True},  # dropped by low_contrast, with its measured contrast
    "inverted": {"inverted": True, "marker": False},  # flipped back by polarity
    "16bit": {"bits": 16},  # read at 16 bits, converted explicitly by to_uint8
}


@dataclass
class DemoResult:
    summary: RunSummary
    phantoms: Path
    sheet: Path


def run_demo(out_dir: str | Path, n: int = 12, seed: int = 0, workers: int = 0,
             pipeline: str | Path | None = None, progress: bool = True) -> DemoResult:
    """Write ``n`` phantoms (+ the variants) under ``out_dir/phantoms`` and run the pipeline on them.

    The run (images, manifest, packed dataset) lands in ``out_dir/run``; a contact sheet
    of four images in ``out_dir/run/inspect.png``.
    """
    out = Path(out_dir)
    made = write_phantom_set(out / "phantoms", n=n, seed=seed, height=1040, width=800, extra=DEMO_VARIANTS)
    config = load_config(pipeline or DEFAULT_PIPELINE, images=made["images"], labels=made["labels"],
                         output=out / "run", workers=workers)
    summary = run_pipeline(config, progress=progress)
    sample = [made["ids"][0], made["ids"][1]] + [i for i in made["ids"] if "-" in i][:2]
    sheet_path = out / "run" / "inspect.png"
    write_png(sheet_path, contact_sheet(config, pick_cases(config, ids=sample), cell_px=200))
    return DemoResult(summary, out / "phantoms", sheet_path)

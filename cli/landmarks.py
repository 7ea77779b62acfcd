"""``handprep landmarks``: parses options, calls handprep.landmarks, prints. No logic of its own."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def landmarks(
    images: Path = typer.Argument(..., help="Folder (or glob) of radiographs."),
    out: Path = typer.Option(..., "--out", help="Folder for landmarks.csv and overlays/."),
    masks: Optional[Path] = typer.Option(None, help="Folder of hand masks named by image stem (else the shipped "
                                                    "segmenter makes them)."),
    segmenter: str = typer.Option("default", help="Mask model when --masks is not given: default (shipped), a "
                                                  "model file, or none (the image alone)."),
    task: Optional[Path] = typer.Option(None, help="A MediaPipe hand_landmarker.task file (Tasks API); default: "
                                                   "the models bundled with mediapipe.", dir_okay=False),
    min_confidence: float = typer.Option(0.3, min=0.0, max=1.0, help="MediaPipe's palm-detection threshold."),
    overlays: bool = typer.Option(True, help="Write OUT/overlays/<id>.png with the keypoints drawn."),
    overwrite: bool = typer.Option(False, help="Redo images already in OUT/landmarks.csv (default: resume)."),
) -> None:
    """21 MediaPipe hand keypoints per radiograph, in the original pixels, with the patient's side.

    OUT/landmarks.csv: id, found, score, handedness (left/right, from the anatomy), x0,y0 … x20,y20
    (MediaPipe's order), reason (when not found), rendering and view that found the hand, mask source.
    """
    from handprep.landmarks.batch import landmark_folder

    try:
        run = landmark_folder(images, out, masks, None if segmenter == "none" else segmenter,
                              str(task) if task else None, min_confidence, overlays, overwrite)
    except (FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    missing = [r for r in run.rows if str(r["found"]) != "1"]
    sides = {side: sum(r["handedness"] == side for r in run.rows) for side in ("left", "right")}
    typer.echo(f"{len(run.rows)} images: hand found in {len(run.rows) - len(missing)} "
               f"({sides['left']} left, {sides['right']} right); {run.resumed} from an earlier run → {run.csv_path}")
    for row in missing[:20]:
        typer.secho(f"  not found {row['path']}: {row['reason']}", fg=typer.colors.YELLOW)
    raise typer.Exit(1 if missing else 0)

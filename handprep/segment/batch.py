"""``handprep segment``: one binary mask PNG per radiograph, resumable, one bad file never stops it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from handprep.io import ImageReadError, list_images, read_image, write_mask
from handprep.segment.infer import Segmenter
from handprep.stages.mask import fill_contours


@dataclass
class SegmentResult:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # outputs already there (resume)
    failed: dict[str, str] = field(default_factory=dict)


def segment_folder(images: str | Path, out: str | Path, model: str = "default", stride_px: int = 96,
                   window: str = "constant", threshold: float | None = None, batch_size: int = 16,
                   device: str = "auto", fill: bool = True, min_area_ratio: float = 0.05,
                   overwrite: bool = False, progress: bool = True) -> SegmentResult:
    """Segment every image into ``out/<stem>.png`` (0/255, the image's size).

    ``fill`` applies ``fill_contours`` (holes filled, regions under ``min_area_ratio`` of the
    largest dropped). Existing outputs are kept unless ``overwrite``: an interrupted run resumes.
    """
    segmenter = Segmenter(model, device)
    out = Path(out)
    result = SegmentResult()
    for path in tqdm(list_images(images), desc="segment", unit="img", disable=not progress):
        target = out / f"{path.stem}.png"
        if target.exists() and not overwrite:
            result.skipped.append(path.stem)
            continue
        try:
            image = read_image(path)
        except ImageReadError as exc:
            result.failed[str(path)] = str(exc)
            continue
        mask = segmenter.mask(image, threshold=threshold, stride_px=stride_px, window=window, batch_size=batch_size)
        if fill:
            mask = fill_contours(mask, min_area_ratio=min_area_ratio)
        write_mask(target, mask)
        result.written.append(path.stem)
    return result

"""masks import / propose: painted exports become exact masks; drafts come with review material."""
import csv

import cv2
import numpy as np

from handprep.io import read_mask, write_png
from handprep.segment.drafts import import_painted, painted_mask, propose
from handprep.segment.metrics import dice
from handprep.synth import phantom


def painted(p, alpha: float, colour=(0, 0, 255)) -> np.ndarray:
    bgr = cv2.cvtColor(p.image, cv2.COLOR_GRAY2BGR).astype(np.float32)
    paint = np.array(colour, np.float32)
    bgr[p.mask > 0] = (1 - alpha) * bgr[p.mask > 0] + alpha * paint
    return bgr.astype(np.uint8)


def test_painted_mask_opaque_and_translucent():
    p = phantom(seed=1, height=260, width=200, border=False, marker=False)
    for alpha in (1.0, 0.5, 0.35):
        assert dice(painted_mask(painted(p, alpha), (0, 0, 255)), p.mask) > 0.99, alpha
    assert not painted_mask(painted(p, 1.0), (0, 255, 0)).any()  # red paint is not green


def test_import_converts_and_reports_what_it_could_not(tmp_path):
    exports, images, out = tmp_path / "exports", tmp_path / "images", tmp_path / "masks"
    hands = {}
    for i, name in enumerate(("a", "b", "c", "d")):
        hands[name] = phantom(seed=i, height=260, width=200, border=False, marker=False)
        write_png(images / f"{name}.png", hands[name].image)
    exports.mkdir()
    cv2.imwrite(str(exports / "a.png"), painted(hands["a"], 0.5))
    cv2.imwrite(str(exports / "b.png"), cv2.cvtColor(hands["b"].image, cv2.COLOR_GRAY2BGR))  # no paint
    cv2.imwrite(str(exports / "c.png"), cv2.resize(painted(hands["c"], 1.0), (100, 130)))  # wrong size
    cv2.imwrite(str(exports / "d.png"), painted(hands["d"], 1.0, colour=(0, 255, 0)))  # painted green
    (exports / "e.png").write_text("not an image")
    result = import_painted(exports, out, "red", images=images, progress=False)
    assert result.converted == ["a"]
    assert dice(read_mask(out / "a.png"), hands["a"].mask) > 0.99
    problems = "\n".join(result.problems.values())
    assert "image is grey: no red paint" in problems
    assert "export is 100×130 px but radiograph c.png is 200×260 px" in problems
    assert "no red pixels found" in problems and "not a readable image" in problems
    assert not (out / "b.png").exists() and not (out / "c.png").exists()
    green = import_painted(exports, tmp_path / "green", "green", progress=False)
    assert "d" in green.converted


def test_propose_writes_drafts_review_sheets_and_flags(tmp_path):
    images = tmp_path / "images"
    truth = {}
    for i in range(5):
        p = phantom(seed=20 + i, height=520, width=400, border=False, marker=False)
        write_png(images / f"h{i}.png", p.image)
        truth[f"h{i}"] = p.mask
    write_png(images / "blank.png", np.zeros((520, 400), np.uint8))
    existing = tmp_path / "masks"
    existing.mkdir()
    write_png(existing / "h4.png", truth["h4"])
    result = propose(images, tmp_path / "drafts", skip_existing=existing, progress=False)
    assert result["drafted"] == 5 and result["skipped"] == 1
    for i in range(4):
        assert dice(read_mask(tmp_path / "drafts" / f"h{i}.png"), truth[f"h{i}"]) > 0.95
    review = list(csv.DictReader(open(tmp_path / "drafts" / "review" / "review.csv")))
    assert review[0]["id"] == "blank" and review[0]["flags"] == "empty"  # flagged drafts first
    assert (tmp_path / "drafts" / "review" / "h0.png").is_file()
    assert [p.name for p in result["sheets"]] == ["sheet_001.png"]

"""Bone-age regressor speed, measured in one run on this machine's device (CUDA if present):

  (1) training images per second: the real training step (``train._run_epoch``: batched
      augmentation, forward, backward, Adam, EMA update) over packed images, after warm-up;
      with an estimate of one epoch of the full RSNA training set (12,611 images);
  (2) prediction seconds per radiograph, regressor only (packed images, TTA views);
  (3) prediction seconds per radiograph from a raw file: the model's recorded chain
      (decode, mask, CLAHE, sharpen, resize) + the regressor, as ``handprep predict`` runs it.

    python benchmarks/bench_boneage.py --data RUN [--raw IMAGES] [--size-px 128] [--model model.pt]

``RUN`` is a ``handprep run`` output folder with a packed dataset and labels in its index.
Without ``--model`` a randomly initialised network is timed (same arithmetic).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handprep.boneage import data as bdata  # noqa: E402
from handprep.boneage.infer import predict_months  # noqa: E402
from handprep.boneage.model import build_model, load_model_file, save_model_file  # noqa: E402
from handprep.boneage.train import EMA, TrainConfig, _Rows, _run_epoch, model_arch, prepare  # noqa: E402
from handprep.modelfile import pick_device  # noqa: E402

RSNA_TRAIN_IMAGES = 12_611


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Bar:
    def update(self, n):
        pass


def train_speed(args, device) -> dict:
    """Images per second of the training step on ``args.train_images`` packed images."""
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(dataset=args.data, labels=args.labels, out=out, backbone=args.backbone,
                             size_px=args.size_px, batch_size=args.batch_size, workers=args.workers,
                             split_fractions=(0.8, 0.2, 0.0), weighted_augment=False, epochs=1, warmup_epochs=0)
        prepared = prepare(config, log=lambda *_: None)
        labelled = prepared["labelled"]
        model = build_model(model_arch(config)).to(device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            model = model.to(memory_format=torch.channels_last)
        ema = EMA(model, 0.99)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
        state = {"size_px": config.size_px or prepared["dataset"].size_px, "base_lr": 1e-3,
                 "norm": {"label_mean": 120.0, "label_std": 40.0, "pixel_mean": 0.2, "pixel_std": 0.25}}
        target = (labelled.ages - 120) / 40
        rows = _Rows(prepared["dataset"].images, labelled.rows, labelled.male, target)
        n = min(args.train_images, len(rows))

        def epoch(count, index):
            view = torch.utils.data.Subset(rows, list(range(count)))
            loader = torch.utils.data.DataLoader(view, batch_size=config.batch_size, num_workers=config.workers,
                                                 drop_last=True, pin_memory=device.type == "cuda")
            _sync(device)
            t0 = time.perf_counter()
            _run_epoch(model, ema, optimizer, loader, config, state, index, device, torch.nn.L1Loss(), _Bar())
            _sync(device)
            return len(loader) * config.batch_size, time.perf_counter() - t0

        epoch(min(n, 2 * config.batch_size), 0)  # warm-up (cudnn autotune, allocator)
        images, seconds = epoch(n, 1)
    return {"train_images_per_s": images / seconds, "train_images_timed": images,
            "rsna_epoch_minutes_estimate": RSNA_TRAIN_IMAGES / (images / seconds) / 60}


def predict_speed(args, device, model, meta) -> dict:
    packed = bdata.open_dataset(args.data)
    n = min(args.predict_images, len(packed.images))
    images, male = np.asarray(packed.images[:n]), np.zeros(n, np.float32)
    out = {}
    for views in sorted({1, args.tta_views}):
        predict_months(model, images[: min(n, 8)], male[:8], meta["norm"], meta["size_px"], device, views)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        predict_months(model, images, male, meta["norm"], meta["size_px"], device, views, batch_size=32)
        _sync(device)
        out[f"regressor_s_per_image_{views}_views"] = (time.perf_counter() - t0) / n
    return out


def chain_speed(args, device, model_path) -> dict:
    from handprep.boneage.predict import predict_images
    from handprep.io import list_images

    paths = list_images(args.raw)[: args.raw_images]
    with tempfile.TemporaryDirectory() as folder:
        for p in paths:
            (Path(folder) / p.name).symlink_to(p.resolve())
        t0 = time.perf_counter()
        rows = predict_images(model_path, folder, Path(folder) / "preds.csv", sex=True, device=str(device.type),
                              progress=False)
        seconds = time.perf_counter() - t0
    ok = sum(r["status"] == "ok" for r in rows)
    return {"raw_to_prediction_s_per_radiograph": seconds / len(paths), "raw_images": len(paths), "raw_ok": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="handprep run output folder with dataset/")
    parser.add_argument("--labels", default=None, help="labels CSV (default: RSNA labels beside --raw, else index)")
    parser.add_argument("--raw", default=None, help="raw radiographs for the chain + regressor timing")
    parser.add_argument("--model", default=None, help="a trained model.pt (default: random weights)")
    parser.add_argument("--backbone", default="resnet34")
    parser.add_argument("--size-px", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--train-images", type=int, default=128)
    parser.add_argument("--predict-images", type=int, default=64)
    parser.add_argument("--raw-images", type=int, default=8)
    parser.add_argument("--tta-views", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    args.labels = args.labels or _index_labels(args.data)
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
               "backbone": args.backbone, "size_px": args.size_px, "batch_size": args.batch_size}
    results.update(train_speed(args, device))
    model_path = args.model
    with tempfile.TemporaryDirectory() as folder:
        if model_path is None:
            packed = bdata.open_dataset(args.data)
            arch = {"backbone": args.backbone, "sex_mode": "scalar", "hidden": 2048, "dropout": 0.5}
            meta = {"arch": arch, "size_px": args.size_px or packed.size_px, "dataset_size_px": packed.size_px,
                    "norm": {"label_mean": 120.0, "label_std": 40.0, "pixel_mean": 0.2, "pixel_std": 0.25},
                    "pipeline": packed.pipeline,
                    "interval": {"method": "tta+split-conformal", "views": args.tta_views, "level": 0.9, "k": 1.6,
                                 "s0": 5.0}}
            model_path = str(Path(folder) / "random.pt")
            save_model_file(model_path, build_model(arch), meta)
        model, meta = load_model_file(model_path, device)
        results.update(predict_speed(args, device, model, meta))
        if args.raw:
            results.update(chain_speed(args, device, model_path))
    for key, value in results.items():
        print(f"{key:40s} {value:.4f}" if isinstance(value, float) else f"{key:40s} {value}")
    print(f"an RSNA-size epoch ({RSNA_TRAIN_IMAGES} images) ≈ {results['rsna_epoch_minutes_estimate']:.1f} min here")
    if "regressor_s_per_image_1_views" in results and f"regressor_s_per_image_{args.tta_views}_views" in results:
        ratio = results[f"regressor_s_per_image_{args.tta_views}_views"] / results["regressor_s_per_image_1_views"]
        print(f"{args.tta_views} TTA views cost {ratio:.1f}× one view")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _index_labels(data: str) -> str:
    """Write the labels the dataset's index carries into a temporary CSV (the benchmark needs ages)."""
    import csv

    index = bdata.dataset_folder(data) / "dataset" / "index.csv"
    rows = [r for r in csv.DictReader(open(index)) if r.get("boneage")]
    path = Path(tempfile.mkdtemp()) / "labels.csv"
    path.write_text("id,boneage,male\n" + "".join(f"{r['id']},{r['boneage']},{r['male']}\n" for r in rows))
    return str(path)


if __name__ == "__main__":
    main()

"""Research: what each image pass costs, beside its floor (one Lite0 pass at 224 px) measured in
the same run.

The product's ONNX encoders (``ml.onnx_encoders``, exported into the settings' ONNX folder when
missing) and views (``ml.views``), 2 threads, the same photos for every pass, passes interleaved
over several rounds so the shared machine's load hits them alike. Writes ``views.md`` and
``views.json`` into ``--out``.

    nice -n 5 .venv/bin/python -m research.bench_views --out reports/bench
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ml.onnx_encoders import OnnxEfficientNetImageEncoder
from ml.views import FiveCropView
from service.config import load_settings


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m research.bench_views", description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos-dir", type=Path, default=None,
                    help="JPEG photos to encode (default: the train_images of WITHSENSE_DATASET)")
    ap.add_argument("--photos", type=int, default=24, help="how many of them")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="photos per network call")
    ap.add_argument("--out", type=Path, default=Path("reports/bench"), help="folder for views.md and views.json")
    args = ap.parse_args(argv)
    settings = load_settings()
    photos_dir = args.photos_dir or Path(settings.dataset) / "train_images"
    paths = sorted(photos_dir.glob("*.jpg"))[: args.photos]
    if not paths:
        raise SystemExit(f"no .jpg photos in {photos_dir}")
    ims = [Image.open(p).convert("RGB") for p in paths]
    mirrored = [ImageOps.mirror(im) for im in ims]

    def encoder(network: str, size: int | None = None) -> OnnxEfficientNetImageEncoder:
        return OnnxEfficientNetImageEncoder(network, settings.onnx_path, batch_size=args.batch, size=size,
                                            threads=2).load()

    lite0, lite0_320 = encoder("efficientnet-lite0"), encoder("efficientnet-lite0", 320)
    lite1, lite2 = encoder("efficientnet-lite1"), encoder("efficientnet-lite2")
    passes = {
        "Lite0 (floor)": lambda: lite0.encode(ims),
        "Lite0 mirror": lambda: lite0.encode(mirrored),
        "Lite0 5 crops at 60 %": lambda: FiveCropView(lite0).encode(ims),
        "Lite0 at 320 px": lambda: lite0_320.encode(ims),
        "Lite2 (260 px)": lambda: lite2.encode(ims),
        "Lite1 (240 px)": lambda: lite1.encode(ims),
    }
    times: dict[str, list[float]] = {k: [] for k in passes}
    for _ in range(args.rounds):
        for k, run in passes.items():
            t0 = time.perf_counter()
            run()
            times[k].append((time.perf_counter() - t0) / len(ims))
    floor = float(np.median(times["Lite0 (floor)"]))
    rows = {k: {"ms_per_photo": round(1000 * float(np.median(v)), 1), "x_floor": round(float(np.median(v)) / floor, 2)}
            for k, v in times.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "views.json").write_text(json.dumps({"photos": len(ims), "rounds": args.rounds, "passes": rows}, indent=2))
    lines = ["# Cost of each image pass (`python -m research.bench_views`)", "",
             f"ONNX Runtime, 2 threads, {len(ims)} photos, median of {args.rounds} interleaved rounds on the shared "
             "2-core machine; the floor is one Lite0 pass at 224 px, measured in the same run.", "",
             "| pass | ms per photo | x floor |", "|---|---|---|"]
    lines += [f"| {k} | {r['ms_per_photo']} | {r['x_floor']} |" for k, r in rows.items()]
    (args.out / "views.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

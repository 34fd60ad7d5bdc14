"""Research only: what each image pass costs, beside its floor (one Lite0 pass) measured in the same run.

ONNX Runtime exports from extract_views.py, 2 threads, the same photos for every pass, passes
interleaved over several rounds so the shared machine's load hits them alike. Writes
reports/bench/views.md and .json.

    nice -n 5 python scripts/experiments/bench_views.py --onnx /tmp/ws12/views
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ml.encoders import center_crop_resize  # noqa: E402
from ml.views import five_crops  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", type=Path, default=Path("/tmp/ws12/views"))
    ap.add_argument("--photos", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = {n: ort.InferenceSession(str(args.onnx / f"efficientnet-{n}.onnx"), opts, providers=["CPUExecutionProvider"])
            for n in ("lite0", "lite1", "lite2") if (args.onnx / f"efficientnet-{n}.onnx").exists()}
    paths = sorted(Path("/work/shared/data/photos/train_images").glob("*.jpg"))[: args.photos]
    ims = [Image.open(p).convert("RGB") for p in paths]

    def run(net, images, size):
        x = np.stack([np.asarray(center_crop_resize(im, size), np.float32) for im in images])
        for s in range(0, len(x), 8):
            sess[net].run(None, {"x": ((x[s:s + 8] - 127.0) / 128.0).transpose(0, 3, 1, 2).copy()})

    passes = {
        "Lite0 (floor)": lambda: run("lite0", ims, 224),
        "Lite0 mirror": lambda: run("lite0", [ImageOps.mirror(im) for im in ims], 224),
        "Lite0 5 crops at 60 %": lambda: run("lite0", [c for im in ims for c in five_crops(im)], 224),
        "Lite0 at 320 px": lambda: run("lite0", ims, 320),
        "Lite2 (260 px)": lambda: run("lite2", ims, 260),
        "Lite1 (240 px)": lambda: run("lite1", ims, 240),
    }
    passes = {k: f for k, f in passes.items() if ("Lite1" not in k or "lite1" in sess)}
    times = {k: [] for k in passes}
    for _ in range(args.rounds):
        for k, f in passes.items():
            t0 = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t0) / len(ims))
    floor = float(np.median(times["Lite0 (floor)"]))
    rows = {k: {"ms_per_photo": round(1000 * float(np.median(v)), 1), "x_floor": round(float(np.median(v)) / floor, 2)}
            for k, v in times.items()}
    out = ROOT / "reports" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "views.json").write_text(json.dumps({"photos": len(ims), "rounds": args.rounds, "passes": rows}, indent=2))
    lines = ["# Cost of each image pass (`scripts/experiments/bench_views.py`)", "",
             f"ONNX Runtime, 2 threads, {len(ims)} photos, median of {args.rounds} interleaved rounds on the shared "
             "2-core machine; the floor is one Lite0 pass at 224 px, measured in the same run.", "",
             "| pass | ms per photo | x floor |", "|---|---|---|"]
    lines += [f"| {k} | {r['ms_per_photo']} | {r['x_floor']} |" for k, r in rows.items()]
    (out / "views.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

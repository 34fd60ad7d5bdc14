"""int8 recipes for the image networks against fp32, on this machine's CPU (docs/scaling.md, "int8 on
a CPU without VNNI"): the served recipe (7-bit weights), 8-bit weights (served until the thirteenth
session) and an S8S8 QDQ copy, each made by ``ml.onnx_quantize.quantize`` from the fp32 export with
the served calibration batches, then the served int8 file itself; the cosine of each to fp32 over
the first 40 dataset photos, and milliseconds a photo on one thread.

    WITHSENSE_DATA_DIR=var OMP_NUM_THREADS=1 .venv/bin/python -m research.int8_recipes efficientnet-lite0 efficientnet-lite2
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantFormat, QuantType
from PIL import Image

from ml.onnx_encoders import cpu_has_vnni, ensure_exported, model_path
from ml.onnx_quantize import quantize
from ml.preprocess import NATIVE_IMAGE_SIZE, efficientnet_batch
from service.config import load_settings

# ``quantize_static`` options over the served recipe (``ml.onnx_quantize.quantize``)
RECIPES = {
    "7-bit weights (served)": {},
    "8-bit weights": {"reduce_range": False},
    "S8S8 QDQ, 8-bit weights": {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QInt8, "reduce_range": False},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("networks", nargs="+", choices=sorted(NATIVE_IMAGE_SIZE))
    ap.add_argument("--photos", type=int, default=40)
    args = ap.parse_args()
    settings = load_settings()
    files = sorted(Path(settings.dataset).rglob("*.jpg"))[: args.photos]
    photos = [Image.open(f).convert("RGB") for f in files]
    print(f"VNNI: {cpu_has_vnni()}; {len(photos)} photos", flush=True)
    for network in args.networks:
        (fp32_path,) = ensure_exported(settings.onnx_path, [network])
        x = efficientnet_batch(photos, NATIVE_IMAGE_SIZE[network])
        reference, seconds = _run(fp32_path, x)
        print(f"{network} fp32: {seconds * 1e3 / len(photos):.1f} ms a photo", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            paths = {name: quantize(fp32_path, Path(tmp) / f"{i}.onnx", network, **recipe)
                     for i, (name, recipe) in enumerate(RECIPES.items())}
            served = model_path(settings.onnx_path, network, "int8")
            if served.exists():
                paths["served int8 file"] = served
            for name, path in paths.items():
                y, seconds = _run(path, x)
                cos = (reference * y).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(y, axis=1)
                print(f"{network} {name}: cosine to fp32 mean {cos.mean():.4f} min {cos.min():.4f}; "
                      f"{seconds * 1e3 / len(photos):.1f} ms a photo", flush=True)


def _run(path: Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {"image": x[:1]})
    start = time.perf_counter()
    y = session.run(None, {"image": x})[0]
    return y, time.perf_counter() - start


if __name__ == "__main__":
    main()

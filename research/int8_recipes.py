"""int8 recipes for the image networks against fp32, on this machine's CPU (docs/scaling.md, "int8 on
a CPU without VNNI"): the served recipe's file, a 7-bit-weight copy (``reduce_range``) and an S8S8
QDQ copy, each made from the fp32 export with the served calibration batches; the cosine of each to
fp32 over the first 40 dataset photos, and milliseconds a photo on one thread.

    WITHSENSE_DATA_DIR=var OMP_NUM_THREADS=1 .venv/bin/python -m research.int8_recipes efficientnet-lite0 efficientnet-lite2
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from ml.onnx_encoders import cpu_has_vnni, ensure_exported, model_path
from ml.onnx_quantize import calibration_batches
from ml.preprocess import NATIVE_IMAGE_SIZE, efficientnet_batch
from service.config import load_settings

RECIPES = {
    "7-bit weights": {"reduce_range": True, "quant_format": QuantFormat.QOperator, "activation_type": QuantType.QUInt8},
    "8-bit weights": {"reduce_range": False, "quant_format": QuantFormat.QOperator, "activation_type": QuantType.QUInt8},
    "S8S8 QDQ": {"quant_format": QuantFormat.QDQ, "activation_type": QuantType.QInt8},
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
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            for name, options in RECIPES.items():
                out = Path(tmp) / f"{name.replace(' ', '_')}.onnx"
                quantize_static(str(prepared), str(out), _reader(network), per_channel=True,
                                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, **options)
                y, seconds = _run(out, x)
                cos = (reference * y).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(y, axis=1)
                print(f"{network} {name}: cosine to fp32 mean {cos.mean():.4f} min {cos.min():.4f}; "
                      f"{seconds * 1e3 / len(photos):.1f} ms a photo", flush=True)
        if model_path(settings.onnx_path, network, "int8").exists():
            y, seconds = _run(model_path(settings.onnx_path, network, "int8"), x)
            cos = (reference * y).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(y, axis=1)
            print(f"{network} served int8 file: cosine mean {cos.mean():.4f} min {cos.min():.4f}", flush=True)


def _reader(network: str) -> CalibrationDataReader:
    batches = iter(calibration_batches(network))

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    return Reader()


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

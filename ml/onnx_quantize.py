"""int8 copies of the EfficientNet-Lite exports (ONNX Runtime static quantization), for ingestion,
and of the MiniLM export (dynamic quantization), for search queries.

    python -m ml.onnx_quantize --out DIR [efficientnet-lite0 ... minilm-l6-v2]

EfficientNet-Lite was designed to be quantized (ReLU6, no squeeze-excite), and on a CPU with
VNNI its int8 graph runs about 2.4 times faster than fp32. The weights are quantized per channel
(int8), the activations per tensor (uint8) with ranges calibrated (min/max) on a fixed set of
training photos shipped with the repository (``CALIBRATION_PHOTOS``), in every view the served
features show the network (the photo, its mirror, the five crops, 320 px): the same file comes
out on every machine. Only torch-free libraries are needed (onnx, onnxruntime).

int8 features are other vectors: the encoders name them ``<network>-int8``, so they never mix
with fp32 ones in the database. Whether they rank as well is measured by grouped CV
(reports/bench/int8_cv.md, ``scripts/compare_int8.py``).

MiniLM's copy (``quantize_text``) is dynamic: its weights int8 per output channel, each
activation's range taken at run time, so no calibration set. It encodes search queries only
(``WITHSENSE_QUERY_PRECISION``): its vectors are compared with the fp32 vectors stored for the
descriptions and learnt by the ranker, which it approximates (cosine to fp32 0.993 on the training
captions, where per-tensor weights gave 0.963), so it keeps MiniLM's name; grouped CV ranks its
queries as well (reports/bench/int8_text_cv.md, ``scripts/compare_int8.py --text``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

from ml.preprocess import NATIVE_IMAGE_SIZE, efficientnet_batch

# Twelve training photos of the fixture dataset (never test photos).
CALIBRATION_PHOTOS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "dataset" / "train_images"
# The input sizes each network sees in the served features (WITHSENSE_IMAGE_MODEL's views).
CALIBRATION_SIZES = {"efficientnet-lite0": (224, 320), "efficientnet-lite1": (240,), "efficientnet-lite2": (260,)}


def calibration_batches(network: str, photos_dir: Path = CALIBRATION_PHOTOS) -> list[dict]:
    from ml.views import five_crops

    paths = sorted(photos_dir.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no calibration photos in {photos_dir}: the int8 export needs the repository's "
                                "tests/fixtures/dataset/train_images")
    photos = [Image.open(p).convert("RGB") for p in paths]
    views = photos + [ImageOps.mirror(im) for im in photos]
    batches = []
    for size in CALIBRATION_SIZES.get(network, (NATIVE_IMAGE_SIZE[network],)):
        batches.append({"image": efficientnet_batch(views, size)})
        if size == NATIVE_IMAGE_SIZE[network] == 224:  # the five-crop view is Lite0 at 224 px
            batches.append({"image": efficientnet_batch([c for im in photos for c in five_crops(im)], size)})
    return batches


def quantize(fp32_path: Path, int8_path: Path, network: str, **recipe) -> Path:
    """Write ``int8_path`` from the fp32 export (under a temporary name, then renamed). ``recipe``:
    ``quantize_static`` options over the served ones (``research.int8_recipes`` compares recipes)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = iter(calibration_batches(network))

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    # QOperator (QLinearConv) runs MLAS's int8 kernels directly; per-channel weights keep the
    # depthwise convolutions' cosine to fp32 above 0.99. reduce_range: 7-bit weights, because on a
    # CPU without VNNI MLAS multiplies uint8 by int8 with VPMADDUBSW, whose int16 sums saturate:
    # with 8-bit weights Lite0's features fell to a cosine of 0.90 to fp32 there (min 0.71 over 40
    # photos), and R@1 on the test queries from 0.52 to 0.47; 7-bit: 0.978 (docs/scaling.md).
    options = {"quant_format": QuantFormat.QOperator, "per_channel": True, "activation_type": QuantType.QUInt8,
               "weight_type": QuantType.QInt8, "reduce_range": True, "calibrate_method": CalibrationMethod.MinMax,
               **recipe}
    with tempfile.TemporaryDirectory(dir=int8_path.parent) as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), Reader(), **options)
        os.replace(out, int8_path)
    return int8_path


def quantize_text(fp32_path: Path, int8_path: Path) -> Path:
    """Write MiniLM's ``int8_path`` from its fp32 export: every MatMul's and Gather's weights int8
    per channel (the embeddings too: 22 MB instead of 90), activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=int8_path.parent) as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(out), per_channel=True, weight_type=QuantType.QInt8)
        os.replace(out, int8_path)
    return int8_path


def main(argv: list[str] | None = None) -> int:
    from ml.onnx_encoders import TEXT_NETWORK, model_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("networks", nargs="*", help=f"default: all of {sorted(NATIVE_IMAGE_SIZE)} and {TEXT_NETWORK}")
    args = parser.parse_args(argv)
    for network in args.networks or [*sorted(NATIVE_IMAGE_SIZE), TEXT_NETWORK]:
        fp32, int8 = model_path(args.out, network), model_path(args.out, network, "int8")
        print(quantize_text(fp32, int8) if network == TEXT_NETWORK else quantize(fp32, int8, network))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ingestion's image pipeline: decoding one batch ahead, encoding threads that give the vectors of one
thread, and int8 networks named apart from fp32 and close to them."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from ml.encoders import ConcatImageEncoder, encode_images_tta, load_encoders
from ml.onnx_encoders import OnnxEfficientNetImageEncoder, available_cores, ensure_exported, model_path
from ml.pipeline import one_ahead
from ml.preprocess import center_crop_resize, efficientnet_batch
from service.config import load_settings
from tests.helpers import FIXTURE_DATASET


@pytest.fixture(scope="module")
def photos():
    paths = sorted((FIXTURE_DATASET / "test_images").glob("*.jpg"))  # not the int8 calibration photos
    assert len(paths) == 4
    return [Image.open(p).convert("RGB") for p in paths] + [Image.open(paths[0]).convert("L")]


def test_one_ahead_makes_the_next_item_while_the_caller_holds_this_one():
    started: list[int] = []
    release = threading.Event()

    def make(i: int) -> int:
        started.append(i)
        if i == 1:
            release.wait(10)
        return i * 10

    results = one_ahead(make, [0, 1, 2])
    assert next(results) == 0
    deadline = time.monotonic() + 10
    while 1 not in started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started == [0, 1]  # item 1 is being made before the caller asks for it, item 2 not yet
    release.set()
    assert list(results) == [10, 20]
    assert list(one_ahead(make, [])) == []


def test_one_ahead_raises_the_makers_error_in_the_caller():
    def make(i: int) -> int:
        if i == 1:
            raise ValueError("unreadable photo")
        return i

    results = one_ahead(make, [0, 1, 2])
    assert next(results) == 0
    with pytest.raises(ValueError, match="unreadable photo"):
        next(results)


def test_efficientnet_batch_is_the_plain_formula_bit_for_bit(photos):
    for size in (224, 260):
        plain = np.stack([np.asarray(center_crop_resize(im, size), dtype=np.float32) for im in photos])
        expected = np.ascontiguousarray(((plain - 127.0) / 128.0).transpose(0, 3, 1, 2))
        got = efficientnet_batch(photos, size)
        assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
        assert np.array_equal(got, expected)
    assert efficientnet_batch([], 224).shape == (0, 3, 224, 224)


def test_encoding_threads_give_the_vectors_of_one_thread(onnx_dir, photos):
    image = load_encoders("minilm", image_model=load_settings().image_model, runtime="onnx", onnx_dir=onnx_dir).image
    assert image.workers == available_cores()
    assert {getattr(p, "encoder", p).threads for p in image.parts} == {1}
    threaded = ConcatImageEncoder(image.parts, flip=True, workers=3).encode(photos)  # shares of 2, 2 and 1 photos
    one = ConcatImageEncoder(image.parts, flip=True, workers=1).encode(photos)
    sequential = np.concatenate([encode_images_tta(p, photos, flip=f)
                                 for p, f in zip(image.parts, image.part_flips(), strict=True)], axis=1)
    assert threaded.shape == (len(photos), image.dim) == (5, 9400)
    assert np.array_equal(one, sequential)
    # A batch split otherwise may change the last float bits (ONNX Runtime's blocking), nothing more.
    np.testing.assert_allclose(threaded, one, rtol=0, atol=1e-4)
    assert image.encode([]).shape == (0, 9400)


@pytest.mark.slow  # quantizes Lite0 in a child process (once per onnx dir)
def test_int8_network_is_named_apart_and_close_to_fp32(onnx_dir, photos):
    (path,) = ensure_exported(onnx_dir, ["efficientnet-lite0"], "int8")
    assert path == model_path(onnx_dir, "efficientnet-lite0", "int8") and path.name.endswith("-opset17-int8w7.onnx")
    assert path.stat().st_size < model_path(onnx_dir, "efficientnet-lite0").stat().st_size / 3
    fp32 = OnnxEfficientNetImageEncoder("efficientnet-lite0", onnx_dir)
    int8 = OnnxEfficientNetImageEncoder("efficientnet-lite0", onnx_dir, precision="int8")
    assert (fp32.name, int8.name) == ("efficientnet-lite0", "efficientnet-lite0-int8")
    a, b = fp32.encode(photos), int8.encode(photos)
    assert b.shape == a.shape == (5, 2280)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    # On any CPU: the 8-bit recipe gave over 0.97 with VNNI; without it (AVX2) it saturated (0.71-0.98
    # over 40 photos), where 7-bit weights give 0.94-0.98 (ml/onnx_quantize.py)
    assert cosine.min() > 0.93 and cosine.mean() > 0.95, cosine
    assert not np.allclose(a, b, atol=1e-3)  # other vectors indeed: they must never share a name


def test_int8_is_onnx_only_and_keys_its_own_ranker(onnx_dir):
    with pytest.raises(ValueError, match="ONNX Runtime only"):
        load_encoders("minilm", runtime="torch", image_precision="int8")
    with pytest.raises(ValueError, match="precision"):
        OnnxEfficientNetImageEncoder("efficientnet-lite0", onnx_dir, precision="int4")
    fp32, int8 = load_settings(image_precision="fp32"), load_settings(image_precision="int8")
    assert int8.encoder_key == fp32.encoder_key + "+int8"
    served = load_encoders("minilm", image_model=int8.image_model, runtime="onnx", onnx_dir=onnx_dir,
                           image_precision="int8").image
    assert served.name == ("efficientnet-lite0-int8+efficientnet-lite0-int8-crop5-pooled+efficientnet-lite0@320-int8-pooled"
                           "+efficientnet-lite1-int8+efficientnet-lite2-int8-flip")

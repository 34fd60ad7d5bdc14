"""Research only: the product's own steps (migrate, ingest dataset, train, evaluate --ood) on a
database of one's own, with the EfficientNet-Lite networks run by ONNX Runtime instead of torch.

Why: on this shared 2-core machine torch encodes 10-17 photos/s and the served features take
several passes per photo; the ONNX exports (``extract_views.py``) give the same vectors (within
1e-4, checked at start) about 5x faster. Everything else is the product's code path: the encoders
keep the torch encoders' names, so model rows and caches are the same, and the feature cache of
the extra training photos is filled from the views computed by ``extract_views.py``.

    WITHSENSE_DATA_DIR=/tmp/ws12/full WITHSENSE_IMAGE_MODEL=... \\
        nice -n 5 python scripts/experiments/full_run.py --views /tmp/ws12/views migrate ingest train evaluate
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ml.encoders import ConcatImageEncoder, EncoderPair, EfficientNetLiteImageEncoder, MiniLMTextEncoder, center_crop_resize, image_part  # noqa: E402
from ml.views import FiveCropView, PooledView  # noqa: E402


class OnnxLite:
    """EfficientNet-Lite via ONNX Runtime, with the torch encoder's name, dim and preprocessing."""

    def __init__(self, torch_encoder: EfficientNetLiteImageEncoder, onnx_dir: Path):
        import onnxruntime as ort

        self.name, self.dim, self.size = torch_encoder.name, torch_encoder.dim, torch_encoder.image_size
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.session = ort.InferenceSession(str(onnx_dir / f"{torch_encoder.network}.onnx"), opts,
                                            providers=["CPUExecutionProvider"])

    def encode(self, images) -> np.ndarray:
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        out = []
        for s in range(0, len(images), 16):
            x = np.stack([np.asarray(center_crop_resize(im, self.size), np.float32) for im in images[s:s + 16]])
            out.append(self.session.run(None, {"x": ((x - 127.0) / 128.0).transpose(0, 3, 1, 2).copy()})[0])
        return np.concatenate(out).astype(np.float32)


def onnx_version(part, onnx_dir: Path):
    if isinstance(part, FiveCropView):
        return FiveCropView(OnnxLite(part.encoder, onnx_dir), part.fraction, part.pooled_only)
    if isinstance(part, PooledView):
        return PooledView(OnnxLite(part.encoder, onnx_dir))
    return OnnxLite(part, onnx_dir)


def fill_cache(encoder: ConcatImageEncoder, views: Path, cache_dir: Path) -> None:
    """The product's feature cache (ml.features.cached_image_features layout) from extract_views.py."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for part, flip in zip(encoder.parts, encoder.part_flips()):
        network = getattr(getattr(part, "encoder", part), "name", part.name).split("@")[0]
        if isinstance(part, FiveCropView):
            pairs = [("orig", "crop5")]
        elif isinstance(part, PooledView):
            pairs = [("orig", f"s{part.encoder.size}")]
        else:
            pairs = [("orig", "orig"), ("mirror", "mirror")] if flip else [("orig", "orig")]
        for view, source in pairs:
            target = cache_dir / f"{part.name}-{view}.npz"
            src = views / f"{network}-{source}.npz"
            if target.exists() or not src.exists():
                continue
            with np.load(src) as f:
                np.savez(target, keys=f["keys"], vectors=f["vectors"][:, : part.dim])
            print(f"cache {target.name} from {src.name}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--views", type=Path, default=Path("/tmp/ws12/views"))
    ap.add_argument("steps", nargs="+")
    args = ap.parse_args()
    from service import cli, runtime
    from service.config import load_settings

    settings = load_settings()
    torch_image = ConcatImageEncoder([image_part(n) for n in settings.image_model.split("+")])
    image = ConcatImageEncoder([onnx_version(p, args.views) for p in torch_image.parts])
    assert image.name == torch_image.name and image.dim == torch_image.dim
    from PIL import Image

    probe = sorted(Path(settings.dataset_dir, "train_images").glob("*.jpg"))[:2]
    ims = [Image.open(p).convert("RGB") for p in probe]
    gap = np.abs(image.encode(ims) - torch_image.encode(ims)).max()
    print(f"ONNX vs torch, max abs difference on {len(ims)} photos: {gap:.2e}", flush=True)
    assert gap < 1e-3
    fill_cache(image, args.views, settings.data_dir / "cache")
    pair = EncoderPair(text=MiniLMTextEncoder(), image=image)
    runtime.encoders_for = lambda _settings: pair  # the one place the CLI gets its encoders
    commands = {"migrate": ["migrate"], "ingest": ["ingest", "dataset"], "train": ["train"],
                "train-force": ["train", "--force"], "evaluate": ["evaluate", "--ood", "--out", str(Path(__file__).resolve().parents[2] / "reports")]}
    for step in args.steps:
        t0 = time.time()
        rc = cli.main(commands[step])
        print(f"== {step}: rc {rc}, {time.time() - t0:.0f} s", flush=True)
        if rc:
            raise SystemExit(rc)


if __name__ == "__main__":
    main()

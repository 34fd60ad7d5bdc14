"""Extra views of a photo, composed over any image encoder with ``name``, ``dim`` and ``encode(images)``.

Flickr8k scenes often hold small subjects (a dog far off in the snow) that one 224 px centre crop
shrinks to a few pixels. Two views let the network see more of the photo:

* :class:`FiveCropView` - the mean of the features of 5 crops (4 corners and the centre, each 60 %
  of the photo's width and height), each resized by the encoder as usual;
* a larger input size (the photo at 320 px), which is the encoder's own ``size`` parameter
  (``EfficientNetLiteImageEncoder(size=320)``; the ONNX encoders take the same parameter).

Both views keep only the pooled features (``pooled_only``): the logits stay those of the main
encoder, which the label bridge reads as the last 1000 columns. The views are plain wrappers, so
torch and ONNX Runtime encoders slot in alike. Which views pay for their ingestion time was
measured by grouped CV (docs/model.md, "Image views").
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

N_CLASSES = 1000


def five_crops(image: Image.Image, fraction: float = 0.6) -> list[Image.Image]:
    """The 4 corners and the centre of ``image``, each ``fraction`` of its width and height."""
    w, h = image.size
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    boxes = [(0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch), ((w - cw) // 2, (h - ch) // 2)]
    return [image.crop((x, y, x + cw, y + ch)) for x, y in boxes]


class FiveCropView:
    """An encoder's features averaged over the five 60 % crops of each photo.

    ``flip = False``: the crops already see the photo 5 times; a mirror would double the cost.
    """

    flip = False

    def __init__(self, encoder, fraction: float = 0.6, pooled_only: bool = True):
        self.encoder = encoder
        self.fraction = fraction
        self.pooled_only = pooled_only

    @property
    def name(self) -> str:
        return f"{self.encoder.name}-crop5{'' if self.fraction == 0.6 else f'@{self.fraction:g}'}{'-pooled' if self.pooled_only else ''}"

    @property
    def dim(self) -> int:
        return self.encoder.dim - (N_CLASSES if self.pooled_only else 0)

    def _crops(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        return [c for im in images for c in five_crops(im.convert("RGB") if im.mode != "RGB" else im, self.fraction)]

    def _mean(self, features) -> np.ndarray:
        out = np.asarray(features, np.float32).reshape(-1, 5, self.encoder.dim).mean(axis=1)
        return out[:, : self.dim]

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._mean(self.encoder.encode(self._crops(images)))

    # ``encode`` in its two stages (resizing, then the network), present when the wrapped encoder
    # has them: scripts/bench_ingest.py times each stage apart.
    def prepare(self, images: Sequence[Image.Image]):
        return self.encoder.prepare(self._crops(images))

    def run(self, prepared) -> np.ndarray:
        return self._mean(self.encoder.run(prepared))


class PooledView:
    """An encoder's pooled features only (its logits dropped), e.g. for the 320 px view."""

    flip = False

    def __init__(self, encoder):
        self.encoder = encoder

    @property
    def name(self) -> str:
        return f"{self.encoder.name}-pooled"

    @property
    def dim(self) -> int:
        return self.encoder.dim - N_CLASSES

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.asarray(self.encoder.encode(images), np.float32)[:, : self.dim]

    def prepare(self, images: Sequence[Image.Image]):
        return self.encoder.prepare(images)

    def run(self, prepared) -> np.ndarray:
        return np.asarray(self.encoder.run(prepared), np.float32)[:, : self.dim]

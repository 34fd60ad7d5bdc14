"""Decoding and checking image bytes: the one gate every photo passes, from the dataset or an upload."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


class ImageRejected(ValueError):
    """The bytes are not an image we accept; the message says why, for the user."""


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied
    format: str
    width: int
    height: int

    @property
    def mimetype(self) -> str:
        return ACCEPTED_FORMATS[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Fully decode ``data`` or raise ImageRejected; pixel count is checked before decoding."""
    if not data:
        raise ImageRejected("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            fmt = probe.format
            if fmt not in ACCEPTED_FORMATS:
                raise ImageRejected(f"format {fmt or 'unknown'} is not accepted; send JPEG, PNG or WebP")
            if getattr(probe, "n_frames", 1) > 1:
                raise ImageRejected("animated images are not accepted")
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageRejected(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
            probe.load()  # a truncated or corrupt file fails here, not later in a worker
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"image has more pixels than the limit of {max_pixels}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad bytes
        raise ImageRejected(f"the file is not a readable image ({type(exc).__name__}: {exc})") from None
    image = ImageOps.exif_transpose(probe)
    image = _to_rgb(image)
    return DecodedImage(image=image, format=fmt, width=image.width, height=image.height)


def _to_rgb(image: Image.Image) -> Image.Image:
    """CMYK, 16-bit, palette and alpha images become 8-bit RGB, as the encoders expect."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping everything above 255 to white.
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        peak = arr.max() or 1.0
        image = Image.fromarray((arr * (255.0 / max(peak, 255.0))).astype("uint8"), mode="L")
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


THUMBNAIL_SIDE = 256


def thumbnail_jpeg(data: bytes, *, max_pixels: int, side: int = THUMBNAIL_SIDE) -> bytes:
    """A JPEG at most ``side`` pixels on its longer edge, upright (EXIF applied), from image bytes."""
    image = decode_image(data, max_pixels=max_pixels).image.copy()
    image.thumbnail((side, side), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()

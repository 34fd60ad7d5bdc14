"""`make install` on a machine without the CPU torch wheel on disk: it adds PyTorch's CPU index by
itself and says so in one line.

PyTorch's index cannot be reached from here, so pip is wrapped: the check for the locked torch is
pip's own dry run (with its find-links pointed at an empty folder, the machine without the wheel),
and the installs that follow are only recorded, with the arguments make gave them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import REPO_ROOT

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
REAL_PIP = Path(sys.executable).with_name("pip")

WRAPPER = """#!/bin/sh
echo "$@" >> "$PIP_CALLS"
case " $* " in
    *" --dry-run "*) PIP_FIND_LINKS="$EMPTY_FIND_LINKS" exec "$REAL_PIP" "$@" ;;
esac
exit 0
"""


def _install(tmp_path: Path, **make_vars: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    venv, calls, empty = tmp_path / "venv", tmp_path / "calls", tmp_path / "no-wheels"
    venv.mkdir()
    empty.mkdir()
    pip = tmp_path / "pip"
    pip.write_text(WRAPPER)
    pip.chmod(0o755)
    env = {**os.environ, "PIP_CALLS": str(calls), "EMPTY_FIND_LINKS": str(empty), "REAL_PIP": str(REAL_PIP)}
    # PYTHON=true: the venv folder stands in for a created one; the recipe's other steps run as written.
    args = [f"VENV={venv}", "PYTHON=true", f"PIP={pip}", *(f"{k}={v}" for k, v in make_vars.items())]
    done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), "install", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    return done, calls.read_text().splitlines() if calls.exists() else []


def _lock_install(calls: list[str]) -> str:
    (line,) = [c for c in calls if c.endswith("-r requirements-dev.lock")]
    return line


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_without_the_wheel_on_disk_make_adds_the_cpu_index_and_says_so(tmp_path):
    done, calls = _install(tmp_path)
    assert done.returncode == 0, done.stderr
    notices = [line for line in done.stdout.splitlines() if "PyTorch's CPU index" in line]
    assert notices == [f"torch==2.13.0+cpu is not on this machine's package sources: installing it from "
                       f"PyTorch's CPU index ({CPU_INDEX})"]
    assert any("--dry-run" in c and "torch==2.13.0+cpu" in c for c in calls)
    assert _lock_install(calls) == f"install --quiet --extra-index-url {CPU_INDEX} -r requirements-dev.lock"
    assert calls[-1] == "install --quiet --no-deps -e ."


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_an_index_named_by_the_user_is_used_without_the_check(tmp_path):
    done, calls = _install(tmp_path, TORCH_INDEX="https://mirror.example/whl/cpu")
    assert done.returncode == 0, done.stderr
    assert "PyTorch's CPU index" not in done.stdout
    assert not any("--dry-run" in c for c in calls)
    assert _lock_install(calls) == "install --quiet --extra-index-url https://mirror.example/whl/cpu -r requirements-dev.lock"

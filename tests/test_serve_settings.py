"""`withsense serve`: the settings (WITHSENSE_BIND, WITHSENSE_WORKERS, WITHSENSE_THREADS) stand unless a
flag is given, and gunicorn is configured from that one object; importing the ml package sets no
environment variable. No server is started here (tests/test_gunicorn.py runs a real one)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.cli import build_parser, main, serve_flags, serve_settings
from service.config import REPO_ROOT, load_settings


@pytest.fixture
def serve_env(monkeypatch):
    monkeypatch.setenv("WITHSENSE_BIND", "0.0.0.0:9001")
    monkeypatch.setenv("WITHSENSE_WORKERS", "3")
    monkeypatch.setenv("WITHSENSE_THREADS", "6")


def _serve(*flags: str):
    return serve_settings(build_parser().parse_args(["serve", *flags]), load_settings())


def test_the_settings_stand_when_no_flag_is_given(serve_env):
    settings = _serve()
    assert (settings.bind, settings.workers, settings.threads) == ("0.0.0.0:9001", 3, 6)


def test_a_flag_wins_over_its_variable(serve_env):
    settings = _serve("--workers", "5", "--port", "9100")
    assert (settings.bind, settings.workers, settings.threads) == ("0.0.0.0:9100", 5, 6)
    assert _serve("--host", "127.0.0.2", "--threads", "1").bind == "127.0.0.2:9001"


@pytest.mark.parametrize("bind, flags, expected", [
    ("[::1]:8000", ("--port", "9"), "[::1]:9"),
    ("unix:/tmp/withsense.sock", ("--port", "9"), "127.0.0.1:9"),
    ("0.0.0.0", ("--port", "9"), "0.0.0.0:9"),
    ("127.0.0.1:8000", ("--host", "0.0.0.0"), "0.0.0.0:8000"),
])
def test_host_or_port_replaces_its_part_of_the_bind(monkeypatch, bind, flags, expected):
    monkeypatch.setenv("WITHSENSE_BIND", bind)
    assert _serve(*flags).bind == expected


def test_gunicorn_is_configured_from_the_settings(serve_env):
    from service.server import BoundedReadWorker, Server

    cfg = Server(_serve("--workers", "4")).cfg  # the configuration only: nothing is bound or forked
    assert (cfg.bind, cfg.workers, cfg.threads) == (["0.0.0.0:9001"], 4, 6)
    assert cfg.worker_class is BoundedReadWorker


def test_a_bad_flag_names_its_variable_and_exits_2(serve_env, monkeypatch, capsys):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")  # main() sets it; restored after the test
    assert main(["serve", "--workers", "0"]) == 2
    assert "WITHSENSE_WORKERS=0" in capsys.readouterr().err


def test_demo_hands_serve_only_the_flags_given():
    parser = build_parser()
    assert serve_flags(parser.parse_args(["demo"])) == []
    assert serve_flags(parser.parse_args(["demo", "--port", "9100", "--threads", "2"])) == [
        "--port", "9100", "--threads", "2"]


def test_importing_the_ml_modules_sets_none_of_the_variables_they_used_to():
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TF_CPP_MIN_LOG_LEVEL")
    env = {k: v for k, v in os.environ.items() if k not in names}
    # (scikit-learn sets KMP_* variables of its own when imported: not ours to judge here.)
    code = f"import os, ml.encoders, ml.listwise; print(sorted(set(os.environ) & set({names!r})))"
    done = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"

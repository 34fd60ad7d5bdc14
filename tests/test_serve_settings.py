"""`withsense serve`: the settings (WITHSENSE_BIND, WITHSENSE_WORKERS, WITHSENSE_THREADS) stand unless a
flag is given, and gunicorn is configured from that one object. No server is started here
(tests/test_gunicorn.py runs a real one)."""
from __future__ import annotations

import pytest

from service.cli import build_parser, main, serve_flags, serve_settings
from service.config import load_settings


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
    assert main(["serve", "--workers", "0"]) == 2
    assert "WITHSENSE_WORKERS=0" in capsys.readouterr().err


def test_demo_hands_serve_only_the_flags_given():
    parser = build_parser()
    assert serve_flags(parser.parse_args(["demo"])) == []
    assert serve_flags(parser.parse_args(["demo", "--port", "9100", "--threads", "2"])) == [
        "--port", "9100", "--threads", "2"]


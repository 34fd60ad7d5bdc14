"""Configuration: one place (service/config.py), documented in README, bad values named at start."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ml.onnx_encoders import cpu_has_vnni
from service.config import REPO_ROOT, Settings, SettingsError, env_names, load_settings


def test_every_setting_is_in_the_readme_table_and_nothing_else():
    readme = (REPO_ROOT / "README.md").read_text()
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.M))
    assert table == set(env_names().values())


@pytest.mark.parametrize("variable, value, fragment", [
    ("WITHSENSE_SHORTLIST", "abc", "valid integer"),
    ("WITHSENSE_SHORTLIST", "0", "greater than or equal to 1"),
    ("WITHSENSE_RATE_LIMIT", "-1", "greater than or equal to 0"),
    ("WITHSENSE_ENCODER", "resnet", "'minilm' or 'clip'"),
    ("WITHSENSE_DESCRIPTION_WEIGHT", "2", "less than or equal to 1"),
    ("WITHSENSE_MAX_UPLOAD_MB", "lots", "valid integer"),
])
def test_a_bad_variable_names_itself(monkeypatch, variable, value, fragment):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert f"{variable}={value!r}" in str(raised.value) and fragment in str(raised.value)


def test_the_command_line_says_which_variable_is_wrong_and_exits_2():
    env = {**os.environ, "WITHSENSE_HNSW_EF_SEARCH": "many", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "service.cli", "db", "status"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "WITHSENSE_HNSW_EF_SEARCH='many'" in done.stderr and "Traceback" not in done.stderr


def test_environment_then_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("WITHSENSE_SHORTLIST", "42")
    monkeypatch.setenv("WITHSENSE_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    assert settings.shortlist == 42 and settings.data_dir == (tmp_path / "data").resolve()
    assert load_settings(shortlist=7).shortlist == 7
    assert settings.with_overrides({"encoder": "clip"}).encoder == "clip"
    with pytest.raises(ValueError, match="unknown settings"):
        load_settings(shortlist_size=7)


def test_defaults_are_what_the_readme_says(monkeypatch):
    for name in env_names().values():
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.shortlist, settings.hnsw_ef_search, settings.rate_limit) == (100, 100, 120)
    assert (settings.max_upload_mb, settings.max_pixels, settings.encoder) == (20, 50_000_000, "minilm")
    # "the library's; for a new one int8 on a CPU with VNNI, else fp32" (service/store/library_precision.py
    # decides the library's)
    assert (settings.image_precision, settings.new_library_precision) == ("", "int8" if cpu_has_vnni() else "fp32")
    assert settings.query_precision == "int8"  # search queries only: nothing stored changes

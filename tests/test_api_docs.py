"""docs/api.md runs as written: every `curl` example against a real server, each answer checked
against the generated OpenAPI document (status listed, body valid for that status's schema).

The examples name photos 12 and 31 and description 140; here 12 is a dataset photo, 31 is the
photo the upload example creates and 140 the description the description example adds. ``$TOKEN``
is the bootstrap admin token; ``$ANA_KEY`` and ``$BO_KEY`` are keys of two photographers made here
(the upload example is run with ana's key, so photo 31 is hers), ``$CY_KEY`` a rater's.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest
import requests
from jsonschema_rs import Draft202012Validator

from service.config import REPO_ROOT

DOC = REPO_ROOT / "docs" / "api.md"
DOC_BASE = "http://127.0.0.1:8000"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def examples() -> list[tuple[str, int | None]]:
    """(curl command, expected status) in document order; the status comes from a ```json answer
    right after the command that carries a "status" (an error example), else any 2xx."""
    blocks = BLOCK.findall(DOC.read_text())
    found = []
    for i, (lang, body) in enumerate(blocks):
        if lang != "sh":
            continue
        commands, pending = [], ""
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            pending = f"{pending}\n{line}" if pending else line.strip()
            if not pending.startswith("curl "):
                pending = ""
                continue
            try:  # a quoted JSON body may run over several lines: wait for its closing quote
                commands.append(shlex.join(shlex.split(pending, comments=True)))
                pending = ""
            except ValueError:
                continue
        expected = None
        if i + 1 < len(blocks) and blocks[i + 1][0] == "json":
            answer = json.loads(blocks[i + 1][1])
            expected = answer.get("status") if isinstance(answer, dict) else None
        found += [(command, expected) for command in commands]
    return found


def test_the_document_has_examples_of_every_write_and_search():
    commands = " ".join(c for c, _ in examples())
    for path in ("/api/search", "/api/search/similar", "/api/photos", "/descriptions", "/api/ratings",
                 "/api/openapi.json", "/readyz", "-X PATCH", "-X DELETE", "/api/me"):
        assert path in commands, path


def _operation(spec: dict, method: str, url_path: str) -> tuple[str, dict]:
    for template, operations in spec["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", r"[^/]+", template) + "$"
        if re.match(pattern, url_path) and method in operations:
            return template, operations[method]
    raise AssertionError(f"{method.upper()} {url_path} is not in the OpenAPI document")


def _check_against_spec(spec: dict, method: str, url_path: str, status: int, body: bytes) -> None:
    template, operation = _operation(spec, method, url_path)
    assert str(status) in operation["responses"], f"{status} is not listed for {method.upper()} {template}"
    content = operation["responses"][str(status)].get("content", {})
    if "application/json" in content:
        schema = {**content["application/json"]["schema"], "components": spec["components"]}
        errors = list(Draft202012Validator(schema).iter_errors(json.loads(body)))
        assert not errors, f"{method.upper()} {url_path} {status}: {errors[0].message}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Where the examples run: the files they upload exist there."""
    from tests.test_faults import _jpeg

    path = tmp_path_factory.mktemp("api-doc")
    (path / "harbour.jpg").write_bytes(_jpeg(424242))
    (path / "beach.jpg").write_bytes(_jpeg(4242))
    return path


def test_every_example_runs_and_matches_the_schema(writable_server, writable, workdir):
    spec = requests.get(f"{writable_server}/api/openapi.json", timeout=30).json()
    from sqlalchemy import text

    with writable["engine"].connect() as conn:
        dataset_photo = conn.execute(text("SELECT min(id) FROM photos WHERE split = 'train'")).scalar()
    ids = {"12": str(dataset_photo)}
    from tests.helpers import new_user

    keys = {f"${name.upper()}_KEY": new_user(writable["engine"], role)["key"]
            for name, role in (("ana", "photographer"), ("bo", "photographer"), ("cy", "rater"))}
    ran = 0
    for command, expected in examples():
        for placeholder, value in ids.items():
            command = re.sub(rf"(?<![\w.]){placeholder}(?![\w.])", value, command)
        command = command.replace(DOC_BASE, writable_server).replace("$TOKEN", "test-token")
        for placeholder, key in keys.items():
            command = command.replace(placeholder, key)
        argv = shlex.split(command) + ["-w", "\n%{http_code}", "--max-time", "120"]
        done = subprocess.run(argv, cwd=workdir, capture_output=True, timeout=180)
        assert done.returncode == 0, (command, done.stderr.decode())
        body, _, status = done.stdout.rpartition(b"\n")
        status = int(status)
        if expected is not None:
            assert status == expected, (command, status, body[:300])
        else:
            assert 200 <= status < 300, (command, status, body[:300])
        url = next(a for a in argv if a.startswith(writable_server))
        method = argv[argv.index("-X") + 1].lower() if "-X" in argv else "post" if "-F" in argv else "get"
        _check_against_spec(spec, method, url[len(writable_server):].split("?")[0], status, body)
        if url.endswith("/api/photos") and status == 201:
            ids["31"] = str(json.loads(body)["photo_id"])
        if url.endswith("/descriptions") and status == 201:
            ids["140"] = str(json.loads(body)["description_id"])
        ran += 1
    assert ran == len(examples()) and {"31", "140"} <= set(ids)
    assert (workdir / "photo.jpg").stat().st_size > 0 and (workdir / "thumb.jpg").stat().st_size > 0


def test_a_wrong_answer_fails_the_schema_check(writable_server):
    """The check above can fail: a search answer missing a field, or with a score above 1, is refused."""
    spec = requests.get(f"{writable_server}/api/openapi.json", timeout=30).json()
    good = {"query": "a dog", "blocked": False, "notice": None, "results": [], "offset": 0, "limit": 5,
            "message": None, "model_version": "m", "took_ms": 1.0}
    _check_against_spec(spec, "post", "/api/search", 200, json.dumps(good).encode())
    with pytest.raises(AssertionError):
        _check_against_spec(spec, "post", "/api/search", 200, json.dumps({**good, "results": [
            {"photo_id": 1, "file_name": "a.jpg", "score": 1.5, "image_url": "/photos/1/image"}]}).encode())
    with pytest.raises(AssertionError):
        _check_against_spec(spec, "post", "/api/search", 200, json.dumps({k: v for k, v in good.items()
                                                                        if k != "results"}).encode())


def test_the_document_and_the_models_name_the_same_fields():
    """Every field of a request model appears in docs/api.md, so the prose does not fall behind."""
    from service.http import schemas

    text_ = DOC.read_text()
    for model in (schemas.SearchRequest, schemas.SimilarRequest, schemas.PhotoUpload, schemas.DescriptionRequest,
                  schemas.RatingRequest, schemas.PhotoEdit):
        for field in model.model_fields:
            assert f"`{field}`" in text_ or f'"{field}"' in text_ or f"{field}=" in text_, (model.__name__, field)


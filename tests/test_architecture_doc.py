"""The docs name what is in the tree: docs/architecture.md's module tables list every module of
service/ and ml/ exactly once, and every code path or dotted module name in docs/*.md and README.md
exists. Fast: reads files only, imports nothing it checks."""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DOCUMENTED_PACKAGES = ("service", "ml")
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

# A table row whose first cell is one backticked module path: | `service/x/y.py` | what it holds |
MODULE_ROW = re.compile(r"^\|\s*`([\w/]+\.py)`\s*\|")
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
# service/api/search.py, research/bench_views.py, gunicorn_conf.py, service/http/
PATH = re.compile(r"(?<![\w./$<>{}~-])((?:[\w.-]+/)*[\w-]+\.py|service/(?:[\w-]+/)+)(?![\w/])")
# service.store.db.session_scope, ml.compare.pick_best
DOTTED = re.compile(r"(?<![\w./-])((?:service|ml|research)(?:\.\w+)+)")
# Paths that are not this repository's code: another checkout, the data folder, generated output.
NOT_OURS = ("../", "var/", "reports/", "$")


def modules_in_tree() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for pkg in DOCUMENTED_PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if p.name != "__init__.py"}


def module_rows(text: str) -> list[str]:
    """The modules named by the rows of the tables under the "## Modules" heading."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Modules"
        elif inside and (m := MODULE_ROW.match(line)):
            rows.append(m.group(1))
    return rows


def test_module_tables_list_every_module_once():
    rows = module_rows(ARCHITECTURE.read_text())
    listed, tree = set(rows), modules_in_tree()
    twice = sorted({m for m in rows if rows.count(m) > 1})
    missing, gone = sorted(tree - listed), sorted(listed - tree)
    assert not (missing or gone or twice), (
        "docs/architecture.md's module tables (under '## Modules', one row per module: "
        "| `service/x/y.py` | what it holds |) do not match the tree:\n"
        + (f"  modules without a row (add one to the table of their package): {missing}\n" if missing else "")
        + (f"  rows naming no module in the tree (remove or rename them): {gone}\n" if gone else "")
        + (f"  modules with more than one row (keep one): {twice}\n" if twice else ""))


@cache
def _tracked_names() -> frozenset[str]:
    skip = {".venv", ".git", "var", "node_modules"}
    return frozenset(p.name for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts))


def _path_exists(path: str) -> bool:
    if "/" not in path.rstrip("/"):
        return path in _tracked_names()  # a bare file name: some module of the repository has it
    return (ROOT / path).exists()


def _code_text(doc: Path) -> str:
    return URL.sub(" ", doc.read_text())


def test_paths_in_docs_exist():
    stale = []
    for doc in DOCS:
        for n, line in enumerate(_code_text(doc).splitlines(), 1):
            for m in PATH.finditer(line):
                path = m.group(1)
                if not path.startswith(NOT_OURS) and not _path_exists(path):
                    stale.append(f"{doc.relative_to(ROOT)}:{n}: {path}")
    assert not stale, "paths in the docs that are not in the tree (moved or removed?):\n  " + "\n  ".join(stale)


@cache
def _module_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _defined(body: list[ast.stmt]) -> set[str]:
    names = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.If | ast.Try):
            names |= _defined(node.body)
    return names


def _dotted_exists(dotted: str) -> bool:
    """``a.b.c.name.attr``: the longest prefix that is a module, then a name it defines, then (for a
    class) one of its attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:i])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.is_file():
            break
    else:
        return False
    rest = parts[i:]
    if not rest:
        return True
    if base.is_dir() and (base / rest[0]).with_suffix(".py").is_file():
        return False  # a module under a package that the loop would have found
    tree = _module_tree(module)
    if rest[0] not in _defined(tree.body):
        return False
    if len(rest) > 1:
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == rest[0]]
        if classes and rest[1] not in _defined(classes[0].body):
            return False
    return True


def test_dotted_names_in_docs_exist():
    stale = []
    for doc in DOCS:
        for n, line in enumerate(_code_text(doc).splitlines(), 1):
            for m in DOTTED.finditer(line):
                if not _dotted_exists(m.group(1).rstrip(".")):
                    stale.append(f"{doc.relative_to(ROOT)}:{n}: {m.group(1)}")
    assert not stale, "module names in the docs that are not in the tree (moved or removed?):\n  " + "\n  ".join(stale)

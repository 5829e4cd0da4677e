"""What a Python filter embedding spamlearn relies on: the package's typing,
the library's documented surface, and the pair of files it must not break."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import spamlearn

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_is_marked_as_typed():
    """pyproject.toml ships ``py.typed``, but there was none: mypy skipped
    spamlearn ("missing library stubs or py.typed marker") and checked
    nothing a user's script did with it."""
    assert (Path(spamlearn.__file__).parent / "py.typed").is_file()


def _lazy_and_type_checking_names() -> tuple[set[str], set[str]]:
    tree = ast.parse((Path(spamlearn.__file__)).read_text())
    lazy, typed = set(), set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            for sub in ast.walk(node):
                if isinstance(sub, ast.Compare) and isinstance(sub.left, ast.Name) and sub.left.id == "name":
                    for comparator in sub.comparators:
                        for const in ast.walk(comparator):
                            if isinstance(const, ast.Constant) and isinstance(const.value, str):
                                lazy.add(const.value)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom):
                    typed.update(alias.asname or alias.name for alias in sub.names)
    return lazy, typed


def test_every_name_loaded_on_first_use_is_named_for_type_checkers():
    """``Classifier`` and the rest come from the module's ``__getattr__``;
    mypy typed them as its return value, Any, so ``clf.score(42)`` passed
    the check of a user's script."""
    lazy, typed = _lazy_and_type_checking_names()
    assert lazy and lazy <= typed, sorted(lazy - typed)


def test_mypy_checks_a_script_that_embeds_spamlearn(tmp_path):
    api = pytest.importorskip("mypy.api")
    script = tmp_path / "milter.py"
    script.write_text(
        "from spamlearn import Classifier, Verdict\n"
        "def check(clf: Classifier, raw: bytes) -> float:\n"
        "    verdict: Verdict = clf.score(raw)\n"
        "    return verdict.spam_prob\n"
        "def wrong(clf: Classifier) -> int:\n"
        "    return clf.score(b'x').spam_prob\n")
    out, err, status = api.run([str(script), "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                                "--python-executable", sys.executable])
    assert "import-untyped" not in out, out
    assert 'Incompatible return value type (got "float", expected "int")' in out, out + err

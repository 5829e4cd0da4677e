"""What a Python filter embedding spamlearn relies on: the package's typing,
the library's documented surface, and the pair of files it must not break."""

from __future__ import annotations

import ast
import sys
import typing
from pathlib import Path

import pytest

import spamlearn
from spamlearn import message_digest, parse_message, tokenize
from spamlearn.classifier import Classifier
from spamlearn.modelstore import LearningSession, ModelStore

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


#: What a filter does with the library, each form of message and of path
#: the docstrings offer; the last line is wrong on purpose.
EMBEDDER_SCRIPT = """\
from pathlib import Path
from spamlearn import ChiSquareNB, Classifier, Verdict, message_digest, tokenize
from spamlearn.modelstore import ModelStore
from spamlearn.store import load_classifier, save_classifier

def check(clf: Classifier, raw: bytes, text: str, view: memoryview) -> float:
    verdict: Verdict = clf.score(raw)
    clf.score(text)
    clf.score(bytearray(raw))
    clf.explain(view)
    clf.learn(text, "spam")
    clf.unlearn(view, "spam")
    tokenize(text)
    message_digest(view)
    ModelStore("model.joblib").learn(text, "ham")
    save_classifier(clf, "model.joblib")
    load_classifier("model.joblib")
    Classifier(ChiSquareNB().init_empty(2**10))
    return verdict.spam_prob

def wrong(clf: Classifier) -> int:
    return clf.score(b'x').spam_prob
"""


def test_mypy_checks_a_script_that_embeds_spamlearn(tmp_path):
    """The hints said ``raw: bytes`` and ``path: Path`` where the docstrings
    offer str, bytearray and memoryview messages and str paths: a correct
    script failed mypy; and a wrong one passed, see above."""
    # mypy is in the test extras: a missing one fails here rather than skips.
    from mypy import api
    script = tmp_path / "milter.py"
    script.write_text(EMBEDDER_SCRIPT)
    out, err, status = api.run([str(script), "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                                "--python-executable", sys.executable])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1, out + err
    assert 'Incompatible return value type (got "float", expected "int")' in errors[0], out


@pytest.mark.parametrize("function", [
    Classifier.score, Classifier.explain, Classifier.learn, Classifier.unlearn, Classifier.tokens,
    parse_message, message_digest, tokenize, ModelStore.learn, ModelStore.forget,
    LearningSession.learn, LearningSession.forget], ids=lambda f: f.__qualname__)
def test_each_form_of_a_message_is_in_the_type_hints(function):
    hints = typing.get_type_hints(function)
    accepted = typing.get_args(hints.get("raw", hints.get("raw_or_digest")))
    assert {bytes, bytearray, memoryview, str} <= set(accepted), hints


def test_an_email_message_object_is_refused_with_the_way_to_its_bytes(tmp_path, sample_spam):
    """``for msg in mailbox.mbox(path): clf.score(msg)``: the first thing a
    notebook tries; the error named the type but not the way out."""
    import email
    import mailbox

    box = mailbox.mbox(tmp_path / "box")
    box.add(sample_spam)
    from_the_box = next(iter(box))
    box.close()
    clf = Classifier(n_features=2**12)
    clf.learn(sample_spam, "spam")
    clf.learn(sample_spam.replace(b"Subject:", b"Subject: re:"), "ham")
    for msg in (email.message_from_bytes(sample_spam), from_the_box):
        with pytest.raises(spamlearn.MessageError, match=r"not \w*Message \(give msg\.as_bytes\(\)"):
            clf.score(msg)
        assert clf.score(msg.as_bytes()).label in tuple(spamlearn.Label)


def test_the_readmes_library_example_runs_as_written(tmp_path, monkeypatch, sample_spam):
    """The README's one example for an embedding filter: it showed scoring
    only, and learning was nowhere said but in ``help(spamlearn)``, so a
    filter learned with ``Classifier.learn`` and ``save_classifier``."""
    import contextlib
    import io
    import re

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(block for block in blocks if "load_scoring_classifier" in block)
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("SPAMLEARN_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("SPAMLEARN_MODEL", str(tmp_path / "model.joblib"))
    monkeypatch.setenv("HOME", str(tmp_path))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, "README.md", "exec"), {"raw_bytes": sample_spam})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("spam ") and lines[1:] == ["learned", "forgotten"]

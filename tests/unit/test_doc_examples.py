"""The examples in the docstrings run as written (a helper found one that no longer did)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import spamlearn

MODULES = sorted(info.name for info in pkgutil.walk_packages(spamlearn.__path__, "spamlearn.")
                 if not info.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_examples_are_there_to_run():
    attempted = sum(doctest.testmod(importlib.import_module(name)).attempted
                    for name in ("spamlearn.classifier", "spamlearn.model"))
    assert attempted >= 10


def test_the_package_docstring_example_runs_after_a_plain_import():
    """In a fresh process: here other tests have imported spamlearn.store and
    spamlearn.defaults, and an example that needs them would pass unnoticed
    (a helper's review: ``spamlearn.store.load_classifier(...)`` failed after
    ``import spamlearn``)."""
    import subprocess
    import sys

    code = ("import doctest, spamlearn; r = doctest.testmod(spamlearn, optionflags=doctest.ELLIPSIS); "
            "print(r.failed, r.attempted)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    failed, attempted = map(int, out.split()[-2:])
    assert failed == 0 and attempted >= 3, out

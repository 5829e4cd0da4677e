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

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


def test_the_python_client_example_waits_for_a_learn_as_long_as_the_service_may():
    """A learn waits up to learn_lock_timeout for another learner: the
    example's 10 s ended in a ReadTimeout traceback while a cron train held
    the model (a helper's review)."""
    import importlib.util
    from pathlib import Path

    import httpx

    from spamlearn.server_settings import ServerSettings

    path = Path(__file__).resolve().parents[2] / "scripts" / "client_example.py"
    spec = importlib.util.spec_from_file_location("client_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    waited = []

    def answer(request):
        waited.append(request.extensions["timeout"]["read"])
        return httpx.Response(200, json={"action": "learned", "revision": 2})

    with httpx.Client(base_url="http://spamlearn", transport=httpx.MockTransport(answer),
                      timeout=httpx.Timeout(10.0, connect=2.0)) as client:
        assert example.learn(client, b"Subject: a\n\nb\n", "spam", "t" * 16)["action"] == "learned"
    assert waited[0] > ServerSettings(workers=1).learn_lock_timeout


@pytest.mark.parametrize("arguments, env, message", [
    (["missing.eml"], {}, "cannot read missing.eml: No such file or directory"),
    (["m.eml", "--learn", "spam"], {},
     "--learn needs the learn token: set SPAMLEARN_LEARN_TOKEN_FILE to its file"),
    (["m.eml", "--learn", "spam"], {"SPAMLEARN_LEARN_TOKEN_FILE": "none.token"},
     "cannot read the learn token file none.token: No such file or directory"),
])
def test_the_python_client_example_says_what_is_missing_in_one_line(tmp_path, arguments, env, message):
    """A missing message file, or --learn without SPAMLEARN_LEARN_TOKEN_FILE,
    was a traceback (the KeyError after the score was printed), where
    client_example.sh says what to set."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("httpx")
    (tmp_path / "m.eml").write_bytes(b"Subject: a\n\nb\n")
    path = Path(__file__).resolve().parents[2] / "scripts" / "client_example.py"
    clean = {k: v for k, v in os.environ.items() if k != "SPAMLEARN_LEARN_TOKEN_FILE"}
    # A URL nothing answers: the checks come before any request.
    result = subprocess.run([sys.executable, str(path), *arguments, "--url", "http://127.0.0.1:9"],
                            cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == "", result
    assert result.stderr == message + "\n", result.stderr


@pytest.mark.parametrize("status, body, message", [
    (401, {"detail": "the bearer token is not valid"}, "401 the bearer token is not valid"),
    (403, {"detail": "learning is disabled"}, "403 learning is disabled"),
    (502, "Bad Gateway", "502 Bad Gateway"),
])
def test_the_python_client_example_reports_a_refused_learn_in_one_line(status, body, message):
    """A wrong token was an httpx.HTTPStatusError traceback."""
    import importlib.util
    from pathlib import Path

    httpx = pytest.importorskip("httpx")
    path = Path(__file__).resolve().parents[2] / "scripts" / "client_example.py"
    spec = importlib.util.spec_from_file_location("client_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    def answer(request):
        return (httpx.Response(status, json=body) if isinstance(body, dict)
                else httpx.Response(status, text=body))

    with httpx.Client(base_url="http://spamlearn", transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(SystemExit, match=f"^spamlearn refused the learn request: {message}$"):
            example.learn(client, b"Subject: a\n\nb\n", "spam", "t" * 16)

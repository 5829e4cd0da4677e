"""``POST /filter``: the message back with spamlearn's X-Spam-* headers, as ``spamlearn filter`` writes it."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

from spamlearn.api import create_app
from spamlearn.cli import app as cli_app
from spamlearn.config import load_settings
from spamlearn.modelstore import ModelStore
from spamlearn.server_settings import ServerSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

SCORE_TOKEN = "score-token-0123456789abcdef"
FORGED = (b"X-Spam-Flag: NO\r\nX-Spam-Status: No,\r\n\tscore=-100\r\nFrom: deals@pharma.example\r\n"
          b"To: alice@example.org\r\nSubject: Cheap pills online\r\n\r\n"
          b"Buy cheap pills now, best price guaranteed.\r\n")


@pytest.fixture
def settings(tmp_path):
    return load_settings(model_path=tmp_path / "model.joblib", min_messages=2,
                         user_models_dir=tmp_path / "users", own_model_users=frozenset({"alice"}))


def client_for(settings, **changes) -> TestClient:
    return TestClient(create_app(settings, ServerSettings(workers=1, reload_interval=0.0, **changes)))


def filtered_by_the_cli(settings, raw: bytes, *args: str) -> bytes:
    """What ``spamlearn filter`` writes for ``raw`` with the same settings."""
    config = settings.model_path.parent / "spamlearn.toml"
    config.write_text(f'[model]\npath = "{settings.model_path}"\nmin_messages = 2\n'
                      f'[users]\ndir = "{settings.user_models_dir}"\nown_model = ["alice"]\n')
    result = CliRunner().invoke(cli_app, ["--config", str(config), "filter", "--exit-zero", *args],
                                input=raw)
    assert result.exit_code == 0, result.stderr
    return result.stdout_bytes


@pytest.mark.parametrize("which", ["sample_spam", "sample_ham"])
def test_the_message_comes_back_as_spamlearn_filter_writes_it(settings, request, which):
    raw = request.getfixturevalue(which)
    with client_for(settings) as client:
        response = client.post("/filter", content=raw, headers={"Content-Type": "message/rfc822"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "message/rfc822"
    assert response.content == filtered_by_the_cli(settings, raw)
    verdict = response.headers["x-spamlearn-verdict"]
    assert verdict == ("spam" if which == "sample_spam" else "ham")
    assert f"X-Spam-Verdict: {verdict}".encode() in response.content
    assert response.content.endswith(raw.split(b"\n\n", 1)[1])
    assert 0 <= float(response.headers["x-spamlearn-spam-prob"]) <= 1


def test_the_senders_own_x_spam_headers_are_replaced(settings):
    with client_for(settings) as client:
        response = client.post("/filter", content=FORGED)
    assert response.status_code == 200
    head = response.content.split(b"\r\n\r\n", 1)[0]
    assert b"X-Spam-Flag: YES" in head and b"X-Spam-Flag: NO" not in head
    assert b"score=-100" not in head and head.count(b"X-Spam-Status: Yes, score=") == 1
    assert head.count(b"\r\n") == 8 and b"\n" not in head.replace(b"\r\n", b"")  # line ends kept


def test_a_message_over_the_scan_limit_comes_back_whole(settings, sample_spam):
    big = sample_spam + b"filler words for the tail\r\n" * 40_000      # ~1 MB, past 512,000 bytes
    with client_for(settings) as client:
        response = client.post("/filter", content=big)
    assert response.status_code == 200
    assert response.content.endswith(big.split(b"\n\n", 1)[1]) and len(response.content) > len(big)


def test_the_users_own_model_answers_for_that_user(settings, spam_messages, ham_messages):
    own = ModelStore.from_settings(settings, "alice")
    with own.session(source="test") as session:     # alice calls every one of these spam
        for raw in spam_messages + ham_messages:
            session.learn(raw, "spam")
        session.learn(b"Subject: x\n\nunrelated words entirely\n", "ham")
        session.learn(b"Subject: y\n\nother unrelated words\n", "ham")
    with client_for(settings) as client:
        for_alice = client.post("/filter?user=alice", content=ham_messages[0])
        for_bob = client.post("/filter?user=bob", content=ham_messages[0])
        twice = client.post("/filter?user=alice&user=bob", content=ham_messages[0])
    assert for_alice.headers["x-spamlearn-verdict"] == "spam"
    assert for_bob.headers["x-spamlearn-verdict"] != "spam"
    assert twice.status_code == 400


def test_errors_are_json_and_carry_no_message(settings, sample_spam):
    with client_for(settings, score_token=SCORE_TOKEN) as client:
        missing = client.post("/filter", content=sample_spam)
        wrong = client.post("/filter", content=sample_spam, headers={"Authorization": "Bearer nope"})
        bearer = {"Authorization": f"Bearer {SCORE_TOKEN}"}
        empty = client.post("/filter", content=b"", headers=bearer)
        good = client.post("/filter", content=sample_spam, headers=bearer)
    assert [r.status_code for r in (missing, wrong, empty, good)] == [401, 401, 400, 200]
    for response in (missing, wrong, empty):
        assert response.headers["content-type"] == "application/json" and "detail" in response.json()
        assert "x-spamlearn-verdict" not in response.headers


def test_an_oversized_message_is_413(settings, sample_spam):
    with client_for(settings, max_body_size=1024) as client:
        response = client.post("/filter", content=sample_spam + b"x" * 2000)
    assert response.status_code == 413


def test_filter_requests_are_counted_in_the_metrics(settings, sample_spam):
    with client_for(settings) as client:
        client.post("/filter", content=sample_spam)
        metrics = client.get("/metrics").text
    assert 'spamlearn_http_requests_total{endpoint="/filter",status="200"} 1' in metrics
    assert 'spamlearn_verdicts_total{verdict="spam"} 1' in metrics


def test_a_large_message_is_rewritten_off_the_event_loop(settings, sample_spam, monkeypatch):
    # Scoring a large message runs in a thread (INLINE_SCORE_BYTES), but its
    # header rewrite ran on the loop: 24 MB of header lines held every other
    # request of the worker (/healthz, the other deliveries) for 0.85 s.
    from spamlearn.api import routes
    from spamlearn.api.service import INLINE_SCORE_BYTES

    real, on_the_loop = routes.marked_pieces, []

    def marked_pieces(raw, verdict, spam_cutoff):
        try:
            asyncio.get_running_loop()
            on_the_loop.append(True)
        except RuntimeError:
            on_the_loop.append(False)
        return real(raw, verdict, spam_cutoff)

    monkeypatch.setattr(routes, "marked_pieces", marked_pieces)
    big = b"X-Header: value\r\n" * (INLINE_SCORE_BYTES // 17 + 1) + sample_spam
    with client_for(settings) as client:
        small_answer = client.post("/filter", content=sample_spam)
        big_answer = client.post("/filter", content=big)
    assert small_answer.status_code == big_answer.status_code == 200
    assert big_answer.content == filtered_by_the_cli(settings, big)
    assert on_the_loop == [True, False]

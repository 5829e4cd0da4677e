"""The HTTP service through FastAPI's TestClient: every endpoint and error path."""

from __future__ import annotations

import ctypes
import fcntl
import os
import subprocess
import sys
import threading
import time
import warnings

import anyio
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from spamlearn.api import app_from_environment, create_app
from spamlearn.api.app import STRICT_START_ENV, worker_environment
from spamlearn.api.schemas import Health, LearnResult, ScoreResult
from spamlearn.api.service import ClientGone
from spamlearn.config import load_settings
from spamlearn.errors import ModelFileError
from spamlearn.message import message_digest
from spamlearn.modelstore import ModelStore
from spamlearn.server_settings import ServerSettings
from spamlearn.store import save_classifier

with warnings.catch_warnings():
    # starlette 1.10 would rather its TestClient ran on httpx2; the project
    # declares httpx, which it still supports.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

LEARN_TOKEN = "learn-token-0123456789abcdef"
SCORE_TOKEN = "score-token-0123456789abcdef"
LEARNER = {"Authorization": f"Bearer {LEARN_TOKEN}"}


@pytest.fixture
def settings(tmp_path):
    return load_settings(model_path=tmp_path / "model.joblib", min_messages=2,
                         user_models_dir=tmp_path / "users", own_model_users=frozenset({"alice"}))


def server(**changes) -> ServerSettings:
    values = {"workers": 1, "learn_token": LEARN_TOKEN, "reload_interval": 0.0}
    values.update(changes)
    return ServerSettings(**values)


def client_for(settings, **changes) -> TestClient:
    return TestClient(create_app(settings, server(**changes)))


def train(path, spam, ham, n_features=2**16) -> ModelStore:
    store = ModelStore(path, n_features=n_features)
    with store.session(source="test") as session:
        for raw in spam:
            session.learn(raw, "spam")
        for raw in ham:
            session.learn(raw, "ham")
    return store


@pytest.fixture
def trained(settings, spam_messages, ham_messages):
    return train(settings.model_path, spam_messages, ham_messages)


# -- /score --------------------------------------------------------------------------------
def test_score_with_the_default_model_until_a_trained_one_is_ready(settings, sample_spam, sample_ham):
    with client_for(settings) as client:
        spam = client.post("/score", content=sample_spam, headers={"Content-Type": "message/rfc822"})
        ham = client.post("/score", content=sample_ham,
                          headers={"Content-Type": "application/octet-stream"})
    assert spam.status_code == ham.status_code == 200
    body = ScoreResult.model_validate(spam.json())
    assert body.verdict == "spam" and body.spam_prob >= 0.9 and body.score == body.spam_prob
    assert (body.ham_cutoff, body.spam_cutoff) == (0.20, 0.90)
    assert body.model.kind == "default" and body.model.name == "default.joblib"
    assert len(body.model.digest) == 12 and body.model.trained_at
    assert body.clues is None and body.truncated is False and body.bytes == len(sample_spam)
    assert ham.json()["verdict"] == "ham"


def test_score_explain_gives_the_clues(settings, sample_spam):
    with client_for(settings) as client:
        body = client.post("/score", params={"explain": "true"}, content=sample_spam).json()
    clues = ScoreResult.model_validate(body).clues
    assert clues and all(0.0 <= c.spam_prob <= 1.0 for c in clues)
    strengths = [abs(c.spam_prob - 0.5) for c in clues]
    assert strengths == sorted(strengths, reverse=True), "strongest first"


def test_score_explain_must_be_a_boolean(settings, sample_spam):
    with client_for(settings) as client:
        response = client.post("/score", params={"explain": "maybe"}, content=sample_spam)
        no = client.post("/score", params={"explain": "0"}, content=sample_spam)
    assert response.status_code == 422 and "explain" in response.json()["detail"]
    assert no.status_code == 200 and "clues" not in no.json()


def test_score_uses_the_shared_model_once_ready(settings, trained, spam_messages):
    with client_for(settings) as client:
        body = client.post("/score", content=spam_messages[0]).json()
    assert body["model"]["kind"] == "shared" and body["model"]["name"] == "model.joblib"
    assert body["model"]["revision"] == trained.load().revision == 1
    assert body["model"]["n_spam"] == 4 and body["verdict"] == "spam"


def test_an_exact_model_scores_every_request_however_little_it_has_learned(
        settings, spam_messages, ham_messages):
    """`spamlearn serve --model FILE`: FILE answers, as `spamlearn --model FILE score`
    does, though it has learned fewer than min_messages (it was the default model)."""
    train(settings.model_path, spam_messages[:1], ham_messages[:1])
    train(settings.user_model_path("alice"), ham_messages, spam_messages)
    with TestClient(create_app(settings, server(), exact_model=True)) as client:
        plain = client.post("/score", content=spam_messages[0]).json()
        alice = client.post("/score", params={"user": "alice"}, content=spam_messages[0]).json()
    with client_for(settings) as client:
        fallback = client.post("/score", content=spam_messages[0]).json()
    assert plain["model"]["kind"] == "shared" and plain["model"]["n_spam"] == 1
    assert alice["model"] == plain["model"]
    assert fallback["model"]["kind"] == "default"


def test_an_exact_model_that_does_not_exist_is_named_not_the_default(settings):
    """`serve --model /missing.joblib` said "the packaged default model is
    missing", which it was not (a helper's review)."""
    from spamlearn.api.app import check_first_model

    assert not settings.model_path.exists()
    with pytest.raises(ModelFileError, match=f"no model file at {settings.model_path}"):
        check_first_model(settings, server(), exact_model=True)
    check_first_model(settings, server())       # without --model, the default answers


def test_score_takes_a_users_own_model_when_ready_else_the_shared_one(
        settings, trained, spam_messages, ham_messages):
    # alice's own model learned the opposite labels, so the answers tell the models apart
    train(settings.user_model_path("alice"), ham_messages, spam_messages)
    message = spam_messages[0]
    with client_for(settings) as client:
        alice = client.post("/score", params={"user": "alice"}, content=message).json()
        by_header = client.post("/score", headers={"X-Spamlearn-User": "alice"}, content=message).json()
        bob = client.post("/score", params={"user": "bob"}, content=message).json()
        nobody = client.post("/score", content=message).json()
    assert alice["model"]["kind"] == "user" and alice["user"] == "alice" and alice["verdict"] == "ham"
    assert by_header["model"] == alice["model"]
    assert bob["model"]["kind"] == "shared" and bob["user"] == "bob" and bob["verdict"] == "spam"
    assert nobody["user"] is None and nobody["model"]["kind"] == "shared"


def test_explaining_a_users_own_model_needs_the_learn_token(settings, trained, spam_messages, ham_messages):
    """Its clue counts say which words that user's mail holds."""
    train(settings.user_model_path("alice"), ham_messages, spam_messages)
    message = spam_messages[0]
    explain = {"user": "alice", "explain": "true"}
    with client_for(settings) as client:
        anyone = client.post("/score", params=explain, content=message)
        learner = client.post("/score", params=explain, content=message, headers=LEARNER)
        plain = client.post("/score", params={"user": "alice"}, content=message)
        shared = client.post("/score", params={"user": "bob", "explain": "true"}, content=message)
    with client_for(settings, learn_token=None) as client:
        no_learning = client.post("/score", params=explain, content=message)
    assert anyone.status_code == 401
    assert learner.status_code == 200 and learner.json()["clues"]
    assert plain.status_code == 200 and "clues" not in plain.json()
    assert shared.status_code == 200 and shared.json()["model"]["kind"] == "shared" and shared.json()["clues"]
    assert no_learning.status_code == 403 and "learn token" in no_learning.json()["detail"]


def test_healthz_answers_head_as_monitors_send_it(settings, trained):
    with client_for(settings) as client:
        head = client.head("/healthz")
        get = client.get("/healthz")
    assert head.status_code == get.status_code == 200 and head.content == b""


@pytest.mark.parametrize("tokens", [{}, {"score_token": SCORE_TOKEN}])
def test_healthz_names_failing_model_files_only_to_a_caller_with_a_token(
        settings, trained, spam_messages, ham_messages, tokens):
    """The path of a user's own model is the user's name: /healthz listed it
    to anyone (the score token set or not); a load balancer, sending no
    token, still gets the status and how many files fail."""
    own = train(settings.user_model_path("alice"), spam_messages, ham_messages)
    with client_for(settings, **tokens) as client:
        assert client.post("/score", params={"user": "alice"}, content=spam_messages[0],
                           headers=LEARNER).json()["model"]["kind"] == "user"
        own.model_path.write_bytes(b"\x80 not a model")
        client.post("/score", params={"user": "alice"}, content=spam_messages[0], headers=LEARNER)
        anonymous = client.get("/healthz")
        head = client.head("/healthz")
        learner = client.get("/healthz", headers=LEARNER)
        wrong = client.get("/healthz", headers={"Authorization": "Bearer wrong-token-0123456789"})
        scorer = client.get("/healthz", headers={"Authorization": f"Bearer {SCORE_TOKEN}"})
    assert anonymous.status_code == head.status_code == 200
    assert "alice" not in anonymous.text and str(settings.user_models_dir) not in anonymous.text
    assert anonymous.json()["model_errors"] is None and anonymous.json()["model_error_count"] == 1
    Health.model_validate(anonymous.json())
    assert str(own.model_path) in Health.model_validate(learner.json()).model_errors
    assert learner.json()["model_error_count"] == 1
    # Never a 401: a health check that failed on a stale token took a healthy service out.
    assert wrong.status_code == 200 and wrong.json()["model_errors"] is None
    # The score token, once set, is a token of the service's own.
    assert scorer.status_code == 200 and (scorer.json()["model_errors"] is None) is not bool(tokens)


def test_healthz_names_failing_model_files_to_anyone_when_no_token_is_set(
        settings, trained, spam_messages, ham_messages):
    train(settings.user_model_path("alice"), spam_messages, ham_messages)
    with client_for(settings, learn_token=None) as client:
        client.post("/score", params={"user": "alice"}, content=spam_messages[0])
        settings.user_model_path("alice").write_bytes(b"\x80 not a model")
        client.post("/score", params={"user": "alice"}, content=spam_messages[0])
        health = client.get("/healthz").json()
    assert list(health["model_errors"]) == [str(settings.user_model_path("alice"))]


def test_metrics_show_the_model_a_score_would_use_now(settings, trained, sample_spam):
    # Learned by cron while no one scored: the gauges follow the file.
    with client_for(settings) as client:
        before = client.get("/metrics").text
        with trained.session(source="cron") as session:
            session.learn(sample_spam + b"\nanother one", "spam")
        after = client.get("/metrics").text
    assert 'spamlearn_model_revision{model="shared"} 1' in before
    assert 'spamlearn_model_revision{model="shared"} 2' in after


def test_per_user_off_ignores_the_user(settings, trained, spam_messages, ham_messages):
    train(settings.user_model_path("alice"), ham_messages, spam_messages)
    with client_for(settings, per_user=False) as client:
        body = client.post("/score", params={"user": "alice"}, content=spam_messages[0]).json()
    assert body["user"] is None and body["model"]["kind"] == "shared"


@pytest.mark.parametrize("path", ["/score/", "/filter/", "/healthz/"])
def test_a_path_with_a_trailing_slash_is_a_404_not_an_empty_redirect(settings, sample_spam, path):
    """It was a 307 without a body to the path without the slash, which
    curl and most filters do not follow: an empty answer and no reason."""
    with client_for(settings) as client:
        response = client.request("GET" if "healthz" in path else "POST", path, content=sample_spam,
                                  follow_redirects=False)
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("user", ["../etc", ".hidden", "a/b", "x" * 129, "al ice"])
def test_an_invalid_user_name_is_a_400(settings, sample_spam, user):
    with client_for(settings) as client:
        response = client.post("/score", params={"user": user}, content=sample_spam)
    assert response.status_code == 400 and "invalid user name" in response.json()["detail"]


@pytest.mark.parametrize("body", [b"", b"   \r\n\r\n  ", b"From e@x Mon Jan  1 00:00:00 2024\n", b"From "])
def test_an_empty_body_is_a_400_counted_as_a_parse_failure(settings, body):
    """An mbox envelope line alone is empty too, as `learn FILE` reads it
    (it was learned, every one as the one empty message; a review)."""
    with client_for(settings) as client:
        response = client.post("/score", content=body)
        metrics = client.get("/metrics").text
    assert response.status_code == 400 and response.json() == {"detail": "empty message"}
    assert "spamlearn_parse_failures_total 1" in metrics


@pytest.mark.parametrize("body", [
    os.urandom(4096),                                   # binary noise
    b"\x00" * 1000,                                     # NULs
    b"<html><body><a href='http://x.example'>click</a></body></html>",  # no headers at all
    b"Content-Type: multipart/mixed; boundary=\"zz\"\n\n--zz\n--zz--\n" * 50,  # broken MIME
    "Subject: =?utf-8?b?!!!?=\n\n\udcff text".encode("utf-8", "surrogateescape"),
], ids=["random", "nuls", "bare-html", "broken-mime", "bad-encoded-word"])
def test_a_body_that_is_not_mail_still_gets_a_score(settings, body):
    with client_for(settings) as client:
        response = client.post("/score", content=body)
    assert response.status_code == 200, response.text
    assert response.json()["verdict"] in ("ham", "unsure", "spam")


def test_a_declared_length_over_the_limit_is_refused_before_reading(settings):
    app = create_app(settings, server(max_body_size=4096))
    read = []

    async def spy(scope, receive, send):  # records whether the app ever asked for the body
        async def counting_receive():
            message = await receive()
            read.append(message["type"])
            return message
        await app(scope, counting_receive, send)

    with TestClient(spy) as client:
        response = client.post("/score", content=b"x" * 5000)
    assert response.status_code == 413 and "4096" in response.json()["detail"]
    assert "http.request" not in read


def test_a_streamed_body_over_the_limit_is_refused_while_counting(settings):
    def chunks():  # no Content-Length: chunked transfer
        for _ in range(10):
            yield b"y" * 1000
    with client_for(settings, max_body_size=4096) as client:
        response = client.post("/score", content=chunks())
        fine = client.post("/score", content=iter([b"Subject: hi\n\nhello there\n"]))
    assert response.status_code == 413
    assert fine.status_code == 200


def test_a_message_past_the_scan_limit_is_scored_on_its_first_part(settings, spam_messages, trained):
    settings = settings.replace(scan_limit=4096)
    head = spam_messages[0]
    long_message = head + b"\nlunch meeting project patch review\n" * 2000  # ~70 kB of hammy tail
    with client_for(settings) as client:
        whole = client.post("/score", content=long_message).json()
        first = client.post("/score", content=long_message[:4096]).json()
    assert whole["truncated"] is True and whole["bytes"] == len(long_message)
    assert whole["spam_prob"] == first["spam_prob"], "only the first scan_limit bytes count"


def test_a_parameter_given_twice_or_users_that_disagree_are_a_400(settings, trained, sample_spam):
    with client_for(settings) as client:
        twice = client.post("/learn?label=spam&label=ham", content=sample_spam, headers=LEARNER)
        users = client.post("/score?user=alice&user=bob", content=sample_spam)
        disagree = client.post("/score", params={"user": "alice"}, content=sample_spam,
                               headers={"X-Spamlearn-User": "bob"})
        agree = client.post("/score", params={"user": "alice"}, content=sample_spam,
                            headers={"X-Spamlearn-User": "alice"})
        two_headers = client.post("/score", content=sample_spam,
                                  headers=[("X-Spamlearn-User", "alice"), ("X-Spamlearn-User", "bob")])
        empty_and_header = client.post("/score?user=", content=sample_spam,
                                       headers={"X-Spamlearn-User": "bob"})
    assert twice.status_code == 400 and "give label once" in twice.json()["detail"]
    assert two_headers.status_code == 400 and "give X-Spamlearn-User once" in two_headers.json()["detail"]
    assert empty_and_header.status_code == 400 and "give one" in empty_and_header.json()["detail"]
    assert users.status_code == 400 and "give user once" in users.json()["detail"]
    assert disagree.status_code == 400 and "disagree" in disagree.json()["detail"]
    assert agree.status_code == 200 and agree.json()["user"] == "alice"
    assert trained.load().n_spam == 4, "nothing learned"


def test_a_form_upload_is_a_415_with_the_right_way_to_send(settings, sample_spam):
    with client_for(settings) as client:
        response = client.post("/score", files={"file": ("m.eml", sample_spam)})
    assert response.status_code == 415 and "--data-binary" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/score", "/filter", "/learn?label=spam", "/forget"])
def test_a_message_wrapped_in_json_is_a_415_and_nothing_is_learned(settings, trained, sample_spam, path):
    wrapped = b'{"message": ' + repr(sample_spam.decode()).encode() + b"}"
    with client_for(settings) as client:
        response = client.post(path, content=wrapped, headers={
            "Content-Type": "application/json; charset=utf-8", **LEARNER})
    assert response.status_code == 415 and "not wrapped in JSON" in response.json()["detail"]
    info = trained.info()
    assert (info["n_spam"], info["revision"], info["ledger_revision"]) == (4, 1, 1), "nothing learned"


def test_a_body_without_line_breaks_sent_as_a_form_is_a_415_that_says_what_is_wrong(settings):
    """64 NUL bytes sent with curl --data-binary (a form's content type, by
    curl's default) were told to "send it with curl --data-binary"."""
    with client_for(settings) as client:
        response = client.post("/score", content=b"\0" * 64,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert response.json()["detail"] == (
        "the body has no line break, so it is no mail message: if it is a file sent with "
        "curl -d, which removes them, send it with --data-binary @message.eml")


def test_a_score_token_closes_scoring_and_metrics(settings, sample_spam):
    with client_for(settings, score_token=SCORE_TOKEN) as client:
        anonymous = client.post("/score", content=sample_spam)
        scorer = client.post("/score", content=sample_spam,
                             headers={"Authorization": f"Bearer {SCORE_TOKEN}"})
        learner = client.post("/score", content=sample_spam, headers=LEARNER)
        metrics_anonymous = client.get("/metrics")
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {SCORE_TOKEN}"})
        health = client.get("/healthz")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert scorer.status_code == learner.status_code == 200
    assert metrics_anonymous.status_code == 401 and metrics.status_code == 200
    assert health.status_code == 200, "health checks need no token"


# -- /learn and /forget ---------------------------------------------------------------------
@pytest.mark.parametrize("headers, error", [
    ({}, None),
    ({"Authorization": "Bearer wrong-token-0123456789"}, "invalid_token"),
    ({"Authorization": f"Basic {LEARN_TOKEN}"}, "invalid_request"),
    ({"Authorization": f"Bearer {SCORE_TOKEN}"}, "invalid_token"),
    ({"Authorization": f"Bearer {LEARN_TOKEN}x"}, "invalid_token"),
    ({"Authorization": f"Bearer {LEARN_TOKEN[:-1]}"}, "invalid_token"),
])
def test_learn_without_the_right_token_is_a_401_and_learns_nothing(settings, sample_spam, headers, error):
    with client_for(settings, score_token=SCORE_TOKEN) as client:
        learn = client.post("/learn", params={"label": "spam"}, content=sample_spam, headers=headers)
        forget = client.post("/forget", content=sample_spam, headers=headers)
    for response in (learn, forget):
        assert response.status_code == 401
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="spamlearn"')
        assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)
    assert not settings.model_path.exists() and not settings.effective_ledger_path.exists()


def test_learning_is_disabled_without_a_learn_token(settings, sample_spam):
    with client_for(settings, learn_token=None) as client:
        response = client.post("/learn", params={"label": "spam"}, content=sample_spam, headers=LEARNER)
    assert response.status_code == 403 and "disabled" in response.json()["detail"]
    assert not settings.model_path.exists()


@pytest.mark.parametrize("params", [{}, {"label": "unsure"}, {"label": "SPAM"}])
def test_learn_needs_a_label_of_spam_or_ham(settings, sample_spam, params):
    with client_for(settings) as client:
        response = client.post("/learn", params=params, content=sample_spam, headers=LEARNER)
    assert response.status_code == 422
    assert not settings.model_path.exists()


def test_learn_counts_a_message_once_and_a_relabel_unlearns_first(settings, sample_spam, sample_ham):
    store = ModelStore.from_settings(settings)
    with client_for(settings) as client:
        def learn(raw, label):
            response = client.post("/learn", params={"label": label}, content=raw, headers=LEARNER)
            assert response.status_code == 200, response.text
            return LearnResult.model_validate(response.json())
        first = learn(sample_spam, "spam")
        again = learn(sample_spam.replace(b"\n", b"\r\n"), "spam")  # the same message, CRLF
        learn(sample_ham, "ham")
        relabel = learn(sample_spam, "ham")
    assert (first.action, first.label, first.previous) == ("learned", "spam", None)
    assert first.digest == message_digest(sample_spam) and first.model == "model.joblib"
    assert (again.action, again.revision) == ("already-known", first.revision)
    assert (relabel.action, relabel.label, relabel.previous) == ("relabelled", "ham", "spam")
    model = store.load()
    assert (model.n_spam, model.n_ham) == (0, 2)
    assert store.check() == []
    assert store.info()["sources"][0]["source"] == "http"


def test_learn_with_the_time_of_the_verdict_lands_in_the_order_users_gave_them(settings, sample_spam):
    """The sieve pipe sends ?at= (when the user moved the message): a request
    that waited for the model must not undo a later move."""
    with client_for(settings) as client:
        later = client.post("/learn", params={"label": "ham", "at": "1700000100.5"}, content=sample_spam,
                            headers=LEARNER)
        assert later.status_code == 200 and later.json()["action"] == "learned", later.text
        older = client.post("/learn", params={"label": "spam", "at": "1700000099.25"}, content=sample_spam,
                            headers=LEARNER)
        assert older.status_code == 200, older.text
        assert (older.json()["action"], older.json()["previous"]) == ("superseded", "ham")
        assert "superseded" in client.get("/metrics").text
        newer = client.post("/learn", params={"label": "spam"}, content=sample_spam, headers=LEARNER)
        assert newer.json()["action"] == "relabelled"
        for bad in ("yesterday", "-1", "nan", "inf"):
            refused = client.post("/learn", params={"label": "spam", "at": bad}, content=sample_spam,
                                  headers=LEARNER)
            assert refused.status_code in (400, 422), (bad, refused.text)


def test_learn_for_a_user_trains_their_own_model(settings, sample_spam):
    with client_for(settings) as client:
        alice = client.post("/learn", params={"label": "spam", "user": "alice"}, content=sample_spam,
                            headers=LEARNER).json()
        bob = client.post("/learn", params={"label": "spam"}, content=sample_spam,
                          headers={**LEARNER, "X-Spamlearn-User": "bob"}).json()
    assert alice["model"] == "alice.joblib" and alice["user"] == "alice"
    assert bob["model"] == "model.joblib", "bob has no own model: the shared one learns"
    own = ModelStore.from_settings(settings, "alice")
    assert own.load().n_spam == 1 and own.info()["sources"][0]["source"] == "http:alice"


def test_forget_by_body_or_by_digest(settings, sample_spam, sample_ham):
    store = ModelStore.from_settings(settings)
    with client_for(settings) as client:
        for raw, label in ((sample_spam, "spam"), (sample_ham, "ham")):
            client.post("/learn", params={"label": label}, content=raw, headers=LEARNER)
        by_body = client.post("/forget", content=sample_spam, headers=LEARNER).json()
        by_digest = client.post("/forget", params={"digest": message_digest(sample_ham)},
                                headers=LEARNER).json()
        unknown = client.post("/forget", content=sample_spam, headers=LEARNER).json()
        both = client.post("/forget", params={"digest": "0" * 64}, content=sample_spam, headers=LEARNER)
        neither = client.post("/forget", headers=LEARNER)
        bad_digest = client.post("/forget", params={"digest": "xyz"}, headers=LEARNER)
    assert (by_body["action"], by_body["previous"]) == ("forgotten", "spam")
    assert (by_digest["action"], by_digest["previous"]) == ("forgotten", "ham")
    assert unknown["action"] == "not-known"
    assert both.status_code == neither.status_code == 400
    assert bad_digest.status_code == 422
    model = store.load()
    assert (model.n_spam, model.n_ham) == (0, 0) and store.check() == []


def test_learn_of_an_empty_body_is_a_400_and_learns_nothing(settings):
    with client_for(settings) as client:
        response = client.post("/learn", params={"label": "ham"}, content=b"", headers=LEARNER)
    assert response.status_code == 400
    assert not settings.model_path.exists()


def test_learn_while_another_learner_holds_the_lock_is_a_503_with_retry_after(settings, sample_spam):
    store = ModelStore.from_settings(settings)
    with client_for(settings, learn_lock_timeout=0.2) as client, store.session(source="cron"):
        response = client.post("/learn", params={"label": "spam"}, content=sample_spam, headers=LEARNER)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json()["detail"].endswith(".lock for 0.2 s; try again later"), "not 0 s"
    assert ModelStore.from_settings(settings).info().get("ledger_counts", {}) in ({}, {"spam": 0, "ham": 0})


def test_learners_waiting_for_the_lock_leave_large_messages_scored_promptly(settings, trained, sample_spam):
    """Learn requests queue in their own few threads: 50 of them waiting for
    the model's lock once held all 40 threads that also score messages past
    64 KiB (4 s for a 200 kB message).  Past LEARNS_WAITING in the queue, a
    learn request is turned away at once (503, Retry-After)."""
    from spamlearn.api import service as service_module

    store = ModelStore.from_settings(settings)
    big = sample_spam + b"\n" + b"word " * 40_000
    statuses: list[int] = []
    with client_for(settings, learn_lock_timeout=10) as client:
        def learn(i: int) -> None:
            response = client.post("/learn", params={"label": "spam"}, content=sample_spam + b"%d" % i,
                                   headers=LEARNER)
            statuses.append(response.status_code)

        threads = [threading.Thread(target=learn, args=(i,)) for i in range(50)]
        with store.session(source="cron"):
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            queued = service_module.LEARN_THREADS + service_module.LEARNS_WAITING
            while len(statuses) < 50 - queued and time.monotonic() < deadline:
                time.sleep(0.05)            # the ones turned away at once
            started = time.monotonic()
            scored = client.post("/score", content=big, headers={"Content-Type": "message/rfc822"})
            elapsed = time.monotonic() - started
        for thread in threads:
            thread.join(30)
    assert scored.status_code == 200 and elapsed < 2.0, elapsed
    assert statuses.count(503) == 50 - queued and statuses.count(200) == queued
    assert ModelStore.from_settings(settings).check() == []


def test_a_queued_learn_waits_no_longer_than_learn_lock_timeout(settings, trained, spam_messages,
                                                                ham_messages):
    """The wait is counted from when the request is admitted: it was counted
    from when a learner thread took it, and 8 requests behind 2 threads, with
    the lock held by another, waited up to 4 times the timeout (a reviewer's
    test; 9 times with more of them)."""
    lock = os.open(f"{settings.model_path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    took: list[tuple[float, int]] = []
    try:
        with client_for(settings, learn_lock_timeout=0.5) as client:
            def learn(raw: bytes) -> None:
                started = time.monotonic()
                response = client.post("/learn", params={"label": "ham"}, content=raw, headers=LEARNER)
                took.append((time.monotonic() - started, response.status_code))

            threads = [threading.Thread(target=learn, args=(raw,)) for raw in spam_messages + ham_messages]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        os.close(lock)
    assert {status for _, status in took} == {503}
    assert max(seconds for seconds, _ in took) < 1.0, sorted(took)


def test_a_queued_learn_whose_client_left_is_dropped_before_learning(settings):
    """Its turn comes after the client gave up (curl --max-time): nobody reads
    the answer, so the learn, and another's wait behind it, is not done."""
    service = create_app(settings, server()).state.service
    done: list[str] = []

    async def gone() -> bool:
        return True

    def work(*args, lock_deadline):
        done.append("learned")

    with pytest.raises(ClientGone):
        anyio.run(lambda: service.run_learner(work, client_gone=gone))
    anyio.run(lambda: service.run_learner(work))
    assert done == ["learned"]


def test_learn_with_a_corrupt_model_or_a_mismatched_ledger_is_a_503(settings, trained, sample_spam):
    with client_for(settings) as client:
        old = settings.model_path.read_bytes()
        for label in ("spam", "ham"):
            client.post("/learn", params={"label": label}, content=sample_spam, headers=LEARNER)
        # The model of revision 1 beside the ledger of revision 3 (one behind would be
        # repaired: that is a crash between the two writes).
        settings.model_path.write_bytes(old)
        mismatch = client.post("/learn", params={"label": "spam"}, content=sample_spam, headers=LEARNER)
        settings.model_path.write_bytes(b"\x80garbage")
        corrupt = client.post("/learn", params={"label": "ham"}, content=sample_spam, headers=LEARNER)
    assert mismatch.status_code == 503 and "does not belong" in mismatch.json()["detail"]
    assert corrupt.status_code == 503 and "corrupt" in corrupt.json()["detail"]


def test_a_learned_model_answers_the_next_score_without_waiting(settings, spam_messages, ham_messages):
    """Learning invalidates the cached model even with a long reload interval."""
    with client_for(settings, reload_interval=3600) as client:
        before = client.post("/score", content=spam_messages[0]).json()["model"]
        for raw, label in [(m, "spam") for m in spam_messages] + [(m, "ham") for m in ham_messages]:
            client.post("/learn", params={"label": label}, content=raw, headers=LEARNER)
        after = client.post("/score", content=spam_messages[0]).json()["model"]
    assert before["kind"] == "default"
    assert after["kind"] == "shared" and after["n_spam"] == 4


def test_learning_through_a_symlinked_model_answers_the_next_score_without_waiting(
        tmp_path, spam_messages, ham_messages):
    real = tmp_path / "real" / "model.joblib"
    train(real, spam_messages[:2], ham_messages[:2])
    link = tmp_path / "model.joblib"
    link.symlink_to(real)
    settings = load_settings(model_path=link, min_messages=2)
    with client_for(settings, reload_interval=3600) as client:
        assert client.post("/score", content=spam_messages[0]).json()["model"]["revision"] == 1
        learned = client.post("/learn", params={"label": "spam"}, content=spam_messages[3], headers=LEARNER)
        assert learned.status_code == 200, learned.text
        assert client.post("/score", content=spam_messages[0]).json()["model"]["revision"] == 2
    assert link.is_symlink()


# -- hot reload -------------------------------------------------------------------------------
def wait_for_revision(client, revision, timeout=10.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        response = client.post("/score", content=b"Subject: hello\n\nhello")
        assert response.status_code == 200, response.text
        seen.append(response.json()["model"]["revision"])
        if seen[-1] == revision:
            return seen
        time.sleep(0.01)
    raise AssertionError(f"revision {revision} never answered; saw {sorted(set(seen))}")


def extra_messages(n):
    return [f"From: x@deals.example\nSubject: Offer number {i}\n\ncheap deal {i} buy now\n".encode()
            for i in range(n)]


def test_a_model_retrained_on_disk_is_picked_up_without_failing_a_request(settings, trained, spam_messages):
    with client_for(settings) as client:
        assert client.post("/score", content=spam_messages[0]).json()["model"]["revision"] == 1
        for revision, raw in enumerate(extra_messages(3), start=2):
            with trained.session(source="cron") as session:
                session.learn(raw, "spam")
            seen = wait_for_revision(client, revision)
            assert set(seen) <= {revision - 1, revision}


def test_the_first_score_after_a_retrain_comes_from_the_new_model(settings, trained, spam_messages):
    """The request that finds the file changed waits (briefly) for it to load:
    the next message after a retrain is scored by the model that learned."""
    with client_for(settings) as client:
        assert client.post("/score", content=spam_messages[0]).json()["model"]["revision"] == 1
        for revision, raw in enumerate(extra_messages(3), start=2):
            with trained.session(source="cron") as session:
                session.learn(raw, "spam")
            assert client.post("/score", content=spam_messages[0]).json()["model"]["revision"] == revision


def test_a_corrupt_new_model_file_keeps_the_old_one_answering(settings, trained, spam_messages):
    with client_for(settings) as client:
        assert client.post("/score", content=spam_messages[0]).json()["model"]["revision"] == 1
        corrupt = settings.model_path.with_name("incoming.tmp")
        corrupt.write_bytes(b"\x80 not a model")
        os.replace(corrupt, settings.model_path)  # how a broken writer would do it: atomically
        for _ in range(20):
            response = client.post("/score", content=spam_messages[0])
            assert response.status_code == 200 and response.json()["model"]["revision"] == 1
            time.sleep(0.01)
        health = Health.model_validate(client.get("/healthz", headers=LEARNER).json())
        metrics = client.get("/metrics").text
        assert str(settings.model_path) in health.model_errors and health.model.revision == 1
        assert 'spamlearn_model_reloads_total{result="failed"} 1' in metrics
        good = ModelStore(settings.model_path.with_name("other.joblib"), n_features=2**16)
        with good.session() as session:
            for raw in spam_messages:
                session.learn(raw, "spam")
            for raw in spam_messages:  # any ham will do to make it ready
                session.learn(raw.replace(b"Subject:", b"Subject: re:"), "ham")
        classifier = good.load()
        classifier.revision = 7
        save_classifier(classifier, settings.model_path, with_ledger=True)
        wait_for_revision(client, 7)
        assert client.get("/healthz", headers=LEARNER).json()["model_errors"] == {}


def test_a_model_replaced_over_and_over_loads_whole_and_without_error(settings, trained, spam_messages):
    """Learners committing every few ms: every load describes one file (its
    digest, key and counts agree) and none fails.  It used to read the file
    twice and give up after five changed reads with an ERROR and a failed
    reload (a helper's review: 19 of 6,850 reloads)."""
    import hashlib

    from spamlearn.api.scoring import ModelKind, load_model

    versions = {}
    for n in range(2):
        classifier = trained.load()
        for raw in extra_messages(n + 1):
            classifier.learn(raw, "spam")
        staged = settings.model_path.with_name(f"v{n}.joblib")
        save_classifier(classifier, staged)
        content = staged.read_bytes()
        versions[hashlib.sha256(content).hexdigest()[:12]] = (content, classifier.n_spam)
    contents = [content for content, _ in versions.values()]
    stop, started = threading.Event(), threading.Event()

    def replace_forever():
        i = 0
        while not stop.is_set():
            staged = settings.model_path.with_name("incoming.tmp")
            staged.write_bytes(contents[i % 2])
            os.replace(staged, settings.model_path)
            started.set()
            i += 1

    writer = threading.Thread(target=replace_forever)
    writer.start()
    try:
        assert started.wait(10)
        loads = [load_model(settings.model_path, ModelKind.SHARED, settings) for _ in range(40)]
    finally:
        stop.set()
        writer.join()
    for loaded in loads:
        assert loaded.digest in versions
        assert loaded.classifier.n_spam == versions[loaded.digest][1]
    assert len({loaded.file_key for loaded in loads}) > 1, "the file was never replaced during the loads"


def test_a_corrupt_shared_model_at_startup_fails_the_start(settings):
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    settings.model_path.write_bytes(b"\x80 not a model")
    with pytest.raises(ModelFileError, match="corrupt"):
        with client_for(settings):
            pass


def test_a_worker_started_degraded_answers_503_until_a_good_model_appears(
        settings, spam_messages, ham_messages):
    """A worker of a multi-process server (its parent checked the model) that
    starts while the file is bad: 503, not a failed start, which made uvicorn
    stop every worker."""
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    settings.model_path.write_bytes(b"\x80 not a model")
    with TestClient(create_app(settings, server(), start_degraded=True)) as client:
        assert client.get("/healthz").status_code == 503
        assert client.post("/score", content=spam_messages[0]).status_code == 503
        settings.model_path.unlink()
        train(settings.model_path, spam_messages, ham_messages)
        assert client.get("/healthz").status_code == 200
        assert client.post("/score", content=spam_messages[0]).json()["model"]["kind"] == "shared"


def test_healthz_503_names_the_model_file_only_to_a_caller_with_a_token(settings, caplog):
    """Its 503 gave the model's path to anyone, where its 200 hides failing
    files from a caller without the score or learn token."""
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    settings.model_path.write_bytes(b"\x80 not a model")
    with TestClient(create_app(settings, server(), start_degraded=True)) as client:
        anonymous = client.get("/healthz")
        head = client.head("/healthz")
        wrong = client.get("/healthz", headers={"Authorization": "Bearer wrong-token-0123456789"})
        learner = client.get("/healthz", headers=LEARNER)
        settings.model_path.unlink()
        settings.model_path.mkdir()         # another error: the log names the file, the answer not
        another = client.get("/healthz")
        settings.model_path.rmdir()
        settings.model_path.write_bytes(b"\x80 not a model")
    with TestClient(create_app(settings, server(learn_token=None), start_degraded=True)) as client:
        open_service = client.get("/healthz")
    assert anonymous.status_code == head.status_code == wrong.status_code == 503
    for hidden in (anonymous, wrong, another):
        assert str(settings.model_path.parent) not in hidden.text and "model.joblib" not in hidden.text
        assert hidden.json()["detail"].startswith("no model to score with")
    assert learner.status_code == open_service.status_code == 503
    assert str(settings.model_path) in learner.json()["detail"]
    assert str(settings.model_path) in open_service.json()["detail"]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("GET /healthz")]
    assert len(logged) == 1 and str(settings.model_path) in logged[0] and "a folder" in logged[0]


def test_a_worker_without_a_model_logs_its_error_once_not_per_request(
        settings, spam_messages, caplog):
    """Every /score and /healthz of a degraded worker fails the same way:
    an ERROR line each, where a failed reload logs once."""
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    settings.model_path.write_bytes(b"\x80 not a model")
    with TestClient(create_app(settings, server(), start_degraded=True)) as client:
        for _ in range(5):
            assert client.post("/score", content=spam_messages[0]).status_code == 503
            assert client.get("/healthz").status_code == 503
        settings.model_path.unlink()
        settings.model_path.mkdir()         # another error: said once too
        for _ in range(5):
            assert client.post("/score", content=spam_messages[0]).status_code == 503
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    per_request = [m for m in errors if m.startswith(("POST /score", "GET /healthz"))]
    # The start said it (a reviewer saw it a third time at the first 503);
    # the new error is said once.
    assert [m for m in errors if "starting without a model" in m and "corrupt" in m], errors
    assert len(per_request) == 1 and "a folder" in per_request[0], per_request


@pytest.mark.parametrize("restarting, starts", [(False, True), (True, False)])
def test_a_worker_started_by_a_restart_fails_on_a_model_that_does_not_load(
        tmp_path, monkeypatch, restarting, starts):
    """A worker that replaces a running one (SIGHUP) must fail to start, so
    that uvicorn keeps the old worker: degraded, it took the place of one
    that scored (a reviewer's SIGHUP made every request a 503)."""
    model = tmp_path / "model.joblib"
    model.write_bytes(b"\x80 not a model")
    monkeypatch.setenv("SPAMLEARN_SERVER_LEARN_TOKEN", LEARN_TOKEN)
    for name, value in worker_environment(None, model, {"workers": 2}, tmp_path / "metrics").items():
        monkeypatch.setenv(name, value)
    if restarting:
        monkeypatch.setenv(STRICT_START_ENV, "1")
    (tmp_path / "metrics").mkdir()

    def exit_now(code):            # the worker process's os._exit, here a catchable exit
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", exit_now)
    if not starts:
        # One line and uvicorn's startup failure, before any app: failing in
        # the lifespan, it was a traceback and four ERROR lines.
        with pytest.raises(SystemExit) as exited:
            app_from_environment()
        assert exited.value.code == 3
        return
    with TestClient(app_from_environment()) as client:
        assert client.get("/healthz").status_code == 503


def test_a_removed_model_falls_back_to_the_default(settings, trained, spam_messages):
    with client_for(settings) as client:
        assert client.post("/score", content=spam_messages[0]).json()["model"]["kind"] == "shared"
        settings.model_path.unlink()
        assert client.post("/score", content=spam_messages[0]).json()["model"]["kind"] == "default"


def _unreadable(monkeypatch, folder):
    """``os.stat`` of anything in ``folder`` fails as for a user who may not
    enter it (root, running the tests, enters every folder)."""
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if os.path.dirname(os.fspath(path)) == str(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)



def test_score_503_names_the_model_file_only_to_a_caller_with_a_token(settings, spam_messages):
    """With only the learn token set /score is open, and its 503 gave the
    model's path (a per-user model's names its user) to anyone."""
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    settings.model_path.write_bytes(b"\x80 not a model")
    with TestClient(create_app(settings, server(), start_degraded=True)) as client:
        anonymous = client.post("/score", content=spam_messages[0])
        learner = client.post("/score", content=spam_messages[0], headers=LEARNER)
        learn = client.post("/learn", params={"label": "spam"}, content=spam_messages[0], headers=LEARNER)
    with TestClient(create_app(settings, server(learn_token=None), start_degraded=True)) as client:
        open_service = client.post("/score", content=spam_messages[0])
    assert {anonymous.status_code, learner.status_code, learn.status_code, open_service.status_code} == {503}
    assert str(settings.model_path.parent) not in anonymous.text and "model.joblib" not in anonymous.text
    assert anonymous.json()["detail"].startswith("no model to score with")
    for shown in (learner, learn, open_service):
        assert str(settings.model_path) in shown.json()["detail"]

def test_a_users_folder_the_service_cannot_enter_is_a_503_for_its_users(
        settings, trained, spam_messages, ham_messages, monkeypatch):
    """Every score for a user with an own model was a 500 and a traceback
    (the stat's PermissionError escaped), as spamlearn score says it: 74."""
    train(settings.user_model_path("alice"), spam_messages, ham_messages)
    with client_for(settings) as client:
        with monkeypatch.context() as patched:
            _unreadable(patched, settings.user_models_dir)
            refused = client.post("/score", params={"user": "alice"}, content=spam_messages[0],
                                  headers=LEARNER)
            anonymous = client.post("/score", params={"user": "alice"}, content=spam_messages[0])
            other = client.post("/score", params={"user": "bob"}, content=spam_messages[0])
        assert refused.status_code == 503 and "Permission denied" in refused.json()["detail"]
        assert anonymous.status_code == 503 and "alice" not in anonymous.json()["detail"]
        assert other.status_code == 200 and other.json()["model"]["kind"] == "shared"
        again = client.post("/score", params={"user": "alice"}, content=spam_messages[0])
    assert again.status_code == 200 and again.json()["model"]["kind"] == "user"


def test_a_model_folder_that_becomes_unreadable_keeps_the_model_answering(
        settings, trained, spam_messages, monkeypatch):
    with client_for(settings) as client:
        assert client.post("/score", content=spam_messages[0]).json()["model"]["kind"] == "shared"
        with monkeypatch.context() as patched:
            _unreadable(patched, settings.model_path.parent)
            scored = client.post("/score", content=spam_messages[0])
            health = client.get("/healthz", headers=LEARNER).json()
        assert scored.status_code == 200 and scored.json()["model"]["kind"] == "shared"
        assert "Permission denied" in health["model_errors"][str(settings.model_path)]
        assert client.get("/healthz", headers=LEARNER).json()["model_errors"] == {}


def test_a_users_folder_that_is_a_file_means_no_own_model(settings, trained, spam_messages):
    """As for spamlearn score: no model there, the shared one scores (a 500 before)."""
    settings.user_models_dir.write_bytes(b"")
    with client_for(settings) as client:
        response = client.post("/score", params={"user": "alice"}, content=spam_messages[0])
    assert response.status_code == 200 and response.json()["model"]["kind"] == "shared"


def test_per_user_models_in_memory_are_bounded(settings, spam_messages, ham_messages):
    users = ["u1", "u2", "u3"]
    settings = settings.replace(own_model_users=frozenset(users))
    for user in users:
        train(settings.user_model_path(user), spam_messages, ham_messages)
    with client_for(settings, max_user_models=2) as client:
        for user in users:
            assert client.post("/score", params={"user": user}, content=spam_messages[0]).json()[
                "model"]["kind"] == "user"
        loaded = client.app.state.service.models.loaded()
    assert sorted(m.path.name for m in loaded if m.kind == "user") == ["u2.joblib", "u3.joblib"]


# -- /healthz, /metrics, OpenAPI ------------------------------------------------------------
def test_healthz_names_the_model_in_use(settings, trained):
    with client_for(settings) as client:
        response = client.get("/healthz")
    health = Health.model_validate(response.json())
    assert response.status_code == 200 and health.status == "ok" and health.learning is True
    assert health.model.kind == "shared" and health.model.revision == 1 and health.pid == os.getpid()


def test_metrics_count_requests_verdicts_learning_and_model_age(settings, sample_spam, sample_ham):
    with client_for(settings) as client:
        for raw in (sample_spam, sample_spam, sample_ham):
            client.post("/score", content=raw)
        client.post("/score", content=b"")
        client.post("/learn", params={"label": "spam"}, content=sample_spam, headers=LEARNER)
        client.post("/learn", params={"label": "spam"}, content=sample_spam, headers=LEARNER)
        client.post("/learn", params={"label": "spam"}, content=sample_spam)
        client.get("/nowhere")
        response = client.get("/metrics")
    text = response.text
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert 'spamlearn_http_requests_total{endpoint="/score",status="200"} 3' in text
    assert 'spamlearn_http_requests_total{endpoint="/score",status="400"} 1' in text
    assert 'spamlearn_http_requests_total{endpoint="/learn",status="401"} 1' in text
    assert 'spamlearn_http_requests_total{endpoint="other",status="404"} 1' in text
    assert 'spamlearn_http_request_duration_seconds_count{endpoint="/score",status="200"} 3' in text
    assert 'spamlearn_verdicts_total{verdict="spam"} 2' in text
    assert 'spamlearn_verdicts_total{verdict="ham"} 1' in text
    assert 'spamlearn_learn_total{action="learned"} 1' in text
    assert 'spamlearn_learn_total{action="already-known"} 1' in text
    assert "spamlearn_parse_failures_total 1" in text
    assert 'spamlearn_model_age_seconds{model="default"}' in text
    ratio = next(line for line in text.splitlines()
                 if line.startswith('spamlearn_model_buckets_used_ratio{model="default"} '))
    assert 0.05 < float(ratio.split()[-1]) < 0.12        # the default model: ~174,000 of 2**21


def test_metrics_of_several_workers_answer_when_the_snapshot_cannot_be_written(
        settings, tmp_path, sample_spam, monkeypatch, caplog):
    """A full /tmp (where serve keeps the workers' snapshots): every scrape
    was a 500 and a traceback.  The other workers' counts and this one's,
    as they are now, are still the answer; the failure is said once, not
    at every flush (each second)."""
    from spamlearn.metrics import Metrics, SnapshotFolder

    caplog.set_level("INFO", logger="spamlearn.serve")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    other = Metrics()
    other.count_verdict("ham")
    SnapshotFolder(metrics_dir, pid=1).write(other)
    with TestClient(create_app(settings, server(), metrics_dir=metrics_dir)) as client:
        client.post("/score", content=sample_spam)

        def disk_full(self, metrics):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(SnapshotFolder, "write", disk_full)
        client.post("/score", content=sample_spam)
        response = client.get("/metrics")
        service = client.app.state.service
        for _ in range(3):
            service.metrics.count_verdict("spam")
            service.flush_metrics()
    warnings = [r for r in caplog.records if "cannot write metrics snapshot" in r.getMessage()]
    assert len(warnings) == 1
    assert response.status_code == 200
    assert 'spamlearn_verdicts_total{verdict="spam"} 2' in response.text     # its own, not its file's
    assert 'spamlearn_verdicts_total{verdict="ham"} 1' in response.text      # the other worker's
    monkeypatch.undo()
    service.flush_metrics()
    assert any("written again" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(SnapshotFolder, "write", disk_full)
    # A worker started now, in place of one that died: it failed to start,
    # and uvicorn stopped every worker.
    with TestClient(create_app(settings, server(), metrics_dir=metrics_dir)) as client:
        assert client.get("/healthz").status_code == 200


def test_the_openapi_schema_documents_every_endpoint_with_examples(settings):
    with client_for(settings) as client:
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) == {"/score", "/filter", "/learn", "/forget", "/healthz", "/metrics"}
    for path, methods in paths.items():
        for operation in methods.values():
            assert operation.get("summary") and operation.get("description"), path
    for path in ("/score", "/filter", "/learn", "/forget"):
        body = paths[path]["post"]["requestBody"]
        assert body["required"] is True
        assert set(body["content"]) == {"message/rfc822", "application/octet-stream"}
        assert body["content"]["message/rfc822"]["schema"] == {"type": "string", "format": "binary"}
        assert "Subject:" in body["content"]["message/rfc822"]["example"]
        responses = paths[path]["post"]["responses"]
        assert {"200", "400", "401", "413", "503"} <= set(responses), path
        assert all("example" in r["content"]["application/json"]
                   for code, r in responses.items() if code.startswith(("4", "5")) and code != "422")
    documented = {p["name"] for p in paths["/score"]["post"]["parameters"]}
    assert documented == {"explain", "user", "X-Spamlearn-User"}
    assert {p["name"] for p in paths["/filter"]["post"]["parameters"]} == {"user", "X-Spamlearn-User"}
    assert "message/rfc822" in paths["/filter"]["post"]["responses"]["200"]["content"]
    assert {p["name"] for p in paths["/learn"]["post"]["parameters"]} == {"label", "user", "at"}
    assert schema["components"]["schemas"]["ScoreResult"]["examples"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# -- /score's fast path ---------------------------------------------------------------------
def _score_cases(sample_spam):
    """Requests covering /score's answers: 200, explain, 400, 401, 413, 415, 422."""
    bearer = {"Authorization": f"Bearer {SCORE_TOKEN}"}
    return [
        ({"content": sample_spam, "headers": bearer}, {}),
        ({"content": sample_spam, "params": {"explain": "true"}, "headers": bearer}, {}),
        ({"content": sample_spam, "params": {"explain": "maybe"}, "headers": bearer}, {}),
        ({"content": sample_spam, "params": {"user": ".hidden"}, "headers": bearer}, {}),
        ({"content": b"", "headers": bearer}, {}),
        ({"content": sample_spam}, {}),
        ({"content": sample_spam, "headers": {"Authorization": "Bearer wrong-token-0123456789"}}, {}),
        ({"content": b"x" * 5000, "headers": bearer}, {"max_body_size": 4096}),
        ({"files": {"file": ("m.eml", sample_spam)}, "headers": bearer}, {}),
    ]


def test_the_fast_path_answers_as_the_route_does(settings, trained, sample_spam, monkeypatch):
    from spamlearn.api import routes

    def answers():
        out = []
        for request, changes in _score_cases(sample_spam):
            with client_for(settings, score_token=SCORE_TOKEN, **changes) as client:
                response = client.post("/score", **request)
                out.append((response.status_code, response.json(),
                            {k: v for k, v in response.headers.items() if k != "date"}))
        return out

    taken = []
    original = routes.score_message

    async def spy(request, service):
        taken.append(request.scope.get("route"))  # set only when FastAPI's router dispatched
        return await original(request, service)

    monkeypatch.setattr(routes, "score_message", spy)
    fast = answers()
    assert taken and all(route is None for route in taken)

    async def pass_through(self, scope, receive, send):
        await self.app(scope, receive, send)

    monkeypatch.setattr(routes.ScoreFastPath, "__call__", pass_through)
    taken.clear()
    routed = answers()
    assert taken and all(route is not None for route in taken)
    assert [status for status, _, _ in fast] == [200, 200, 422, 400, 400, 401, 401, 413, 415]
    assert fast == routed


def test_stop_signal_handlers_come_off_whatever_order_two_lifespans_end_in(settings):
    """Two apps in one process whose lifespans overlap and end in the order
    they began: the first's handler was put back over the second's, and
    SIGTERM was left to the first app's stale handler (a reviewer's script)."""
    import asyncio
    import signal

    first, second = create_app(settings, server()), create_app(settings, server())
    reached: list[str] = []

    def before(signum, frame):
        reached.append("original")

    original = signal.signal(signal.SIGTERM, before)
    try:
        async def overlap() -> None:
            lifespans = [app.router.lifespan_context(app) for app in (first, second)]
            for lifespan in lifespans:
                await lifespan.__aenter__()
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            await lifespans[0].__aexit__(None, None, None)
            first.state.service.stopping.clear()
            second.state.service.stopping.clear()
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            await lifespans[1].__aexit__(None, None, None)

        asyncio.run(overlap())
        assert reached == ["original", "original"]
        assert not first.state.service.stopping.is_set(), "the first app's handler is gone"
        assert second.state.service.stopping.is_set()
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, original)


_MODEL_CHURN = r"""
import ctypes, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from fastapi.testclient import TestClient
from spamlearn.api import create_app
from spamlearn.config import load_settings
from spamlearn.modelstore import ModelStore
from spamlearn.server_settings import ServerSettings

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
folder, spam, ham = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]).read_bytes()
settings = load_settings(model_path=folder / "model.joblib", min_messages=1)
with ModelStore.from_settings(settings).session() as session:
    session.learn(spam, "spam")
    session.learn(ham, "ham")
app = create_app(settings, ServerSettings(workers=1, reload_interval=0.0, learn_token="t" * 24),
                 freeze_gc=True)
with TestClient(app) as client:
    for n in range(12):
        message = spam.replace(b"Subject: ", b"Subject: %d " % n)
        assert client.post("/learn", params={"label": "spam"}, content=message,
                           headers={"Authorization": "Bearer " + "t" * 24}).status_code == 200
        assert client.post("/score", content=message).status_code == 200
print(libc.mallinfo2().fordblks)
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc 2.33 or later only")
def test_a_serving_process_gives_back_the_memory_of_the_models_it_replaced(tmp_path, sample_spam,
                                                                             sample_ham):
    """Every learn request is a new model file, loaded by the next score and
    the old one dropped (the learner loaded and saved one more): its arrays,
    8-16 MB each with the default features, went back to glibc's heaps and
    stayed there, free but resident (37 MB after this churn; a soak's
    workers held 450 MB so, at 620-920 MB RSS for 200 MB in use).  Measured
    as malloc's free bytes, in a process of its own (this one's heaps are
    pytest's)."""
    spam, ham = tmp_path / "spam.eml", tmp_path / "ham.eml"
    spam.write_bytes(sample_spam)
    ham.write_bytes(sample_ham)
    held = subprocess.run([sys.executable, "-c", _MODEL_CHURN, str(tmp_path), str(spam), str(ham)],
                          capture_output=True, text=True, check=True, timeout=120)
    assert int(held.stdout) < 8 * 2**20, f"{int(held.stdout) >> 20} MB held free by malloc"

"""spamlearn resize: a crowded model counted again into more buckets, from its ledger."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from spamlearn import LedgerError, ModelFileError
from spamlearn.cli import ExitCode, app
from spamlearn.ledger import Ledger
from spamlearn.modelstore import Action, ModelStore

runner = CliRunner()


def _messages(spam_messages, ham_messages, sample_spam, sample_ham):
    numbered = [(f"Subject: note {i}\nFrom: n{i}@example.org\n\n"
                 f"word{i} common text {i * 7}\n".encode(), "ham")
                for i in range(30)]
    return ([(m, "spam") for m in spam_messages + [sample_spam]]
            + [(m, "ham") for m in ham_messages + [sample_ham]] + numbered)


def _learn_all(store, messages) -> None:
    with store.session("test") as session:
        for raw, label in messages:
            session.learn(raw, label)


def test_resize_makes_the_model_those_messages_make_at_that_size(tmp_path, spam_messages, ham_messages,
                                                                   sample_spam, sample_ham):
    messages = _messages(spam_messages, ham_messages, sample_spam, sample_ham)
    small = ModelStore(tmp_path / "small.joblib", n_features=2**16)
    _learn_all(small, messages)
    revision = small.load().revision
    before, after = small.resize(2**18)
    assert before.model.n_features_in_ == 2**16 and after.model.n_features_in_ == 2**18
    direct = ModelStore(tmp_path / "direct.joblib", n_features=2**18)
    _learn_all(direct, messages)
    resized, wanted = small.load(), direct.load()
    assert resized.model.n_features_in_ == 2**18
    assert np.array_equal(resized.model.spam_count_, wanted.model.spam_count_)
    assert np.array_equal(resized.model.ham_count_, wanted.model.ham_count_)
    assert (resized.n_spam, resized.n_ham) == (wanted.n_spam, wanted.n_ham)
    assert resized.revision == revision + 1
    assert resized.score(sample_spam).spam_prob == pytest.approx(wanted.score(sample_spam).spam_prob)
    assert small.check() == []
    with Ledger(small.ledger_path) as ledger:
        note = json.loads(ledger.get_state("model:resized"))
    assert (note["from"], note["to"]) == (2**16, 2**18)
    # Learning goes on at the new size: a relabel and a forget unlearn exactly.
    assert small.learn(sample_spam, "ham").action == Action.RELABELLED
    assert small.forget(sample_ham).action == Action.FORGOTTEN
    assert small.check() == []


def test_a_resize_whose_model_write_fails_changes_nothing(tmp_path, monkeypatch, sample_spam, sample_ham):
    store = ModelStore(tmp_path / "model.joblib", n_features=2**16)
    store.learn(sample_spam, "spam")
    store.learn(sample_ham, "ham")
    before = store.load()

    def disk_full(*args, **kwargs):
        raise ModelFileError("cannot write the model: No space left on device")

    monkeypatch.setattr("spamlearn.modelstore.save_classifier", disk_full)
    with pytest.raises(ModelFileError):
        store.resize(2**18)
    monkeypatch.undo()
    after = store.load()
    assert after.model.n_features_in_ == 2**16 and after.revision == before.revision
    assert store.check() == []
    with Ledger(store.ledger_path) as ledger:
        assert ledger.revision == before.revision and ledger.get_state("model:resized") is None


def test_a_ledger_of_bucket_numbers_cannot_be_resized_but_still_learns(tmp_path, sample_spam, sample_ham):
    store = ModelStore(tmp_path / "model.joblib", n_features=2**16)
    with Ledger(store.ledger_path) as ledger:
        # A ledger made before the hashes: schema 1.
        ledger.connection.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store.learn(sample_spam, "spam")
    store.learn(sample_ham, "ham")
    assert store.learn(sample_spam, "ham").action == Action.RELABELLED
    assert store.check() == []
    with Ledger(store.ledger_path) as ledger:
        assert not ledger.holds_hashes
    before = store.model_path.read_bytes()
    with pytest.raises(LedgerError, match="made before spamlearn kept token hashes"):
        store.resize(2**18)
    assert store.model_path.read_bytes() == before
    result = runner.invoke(app, ["--model", str(store.model_path), "resize", "--features", str(2**18)])
    assert result.exit_code == ExitCode.IOERR
    assert "learn a new model from the mail instead" in result.output
    shown = runner.invoke(app, ["--model", str(store.model_path), "info"]).output
    assert "(bucket numbers: cannot be resized)" in shown
    assert json.loads(runner.invoke(app, ["--model", str(store.model_path), "info", "--json"]).output)[
        "resizable"] is False


def test_resize_on_the_command_line(tmp_path, sample_spam, sample_ham):
    config = tmp_path / "spamlearn.toml"
    model = tmp_path / "model.joblib"
    config.write_text(f'[model]\npath = "{model}"\nfeatures = 65536\n')
    for path, raw in (("s.eml", sample_spam), ("h.eml", sample_ham)):
        (tmp_path / path).write_bytes(raw)
    assert runner.invoke(app, ["--config", str(config), "learn", "--spam",
                               str(tmp_path / "s.eml")]).exit_code == 0
    assert runner.invoke(app, ["--config", str(config), "learn", "--ham",
                               str(tmp_path / "h.eml")]).exit_code == 0
    done = runner.invoke(app, ["--config", str(config), "resize", "--features", "1048576"])
    assert done.exit_code == 0, done.output
    assert "65,536 -> 1,048,576 buckets" in done.output and "2 learned messages" in done.output
    shown = json.loads(runner.invoke(app, ["--config", str(config), "info", "--json", "--check"]).output)
    assert shown["n_features"] == 2**20 and shown["check"] == "ok" and shown["resizable"] is True
    odd = runner.invoke(app, ["--config", str(config), "resize", "--features", "3000000"])
    assert odd.exit_code == ExitCode.CONFIG and "power of two" in odd.output
    nothing = runner.invoke(app, ["--model", str(tmp_path / "typo" / "none.joblib"), "resize", "--features",
                                  "4194304"])
    assert nothing.exit_code == ExitCode.IOERR and "nothing to resize" in nothing.output
    assert not (tmp_path / "typo").exists(), "a folder and a lock file were made at the typo"


def test_a_ledger_of_an_unknown_schema_is_refused_plainly(tmp_path, sample_spam):
    store = ModelStore(tmp_path / "model.joblib")
    store.learn(sample_spam, "spam")
    with Ledger(store.ledger_path) as ledger:
        assert ledger.holds_hashes
        ledger.connection.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(LedgerError, match="schema version 3; this spamlearn reads versions 1 and 2"):
        store.learn(sample_spam, "ham")


def test_the_share_of_buckets_in_use_follows_learning(tmp_path, sample_spam, sample_ham):
    store = ModelStore(tmp_path / "model.joblib", n_features=2**16)
    store.learn(sample_spam, "spam")
    with store.session() as session:
        model = session.classifier.model
        first = model.buckets_used_ratio()
        assert first == np.count_nonzero(model.spam_count_ | model.ham_count_) / 2**16
        session.learn(sample_ham, "ham")
        assert model.buckets_used_ratio() > first          # not a stale value
        session.forget(sample_ham)
        assert model.buckets_used_ratio() == first


def test_a_size_no_model_file_may_hold_is_refused_before_anything_changes(tmp_path, sample_spam, sample_ham):
    """2**29 buckets passed the hasher but no load accepts such a file: the
    resize replaced a working model with one that could never be read."""
    store = ModelStore(tmp_path / "model.joblib", n_features=2**16)
    store.learn(sample_spam, "spam")
    store.learn(sample_ham, "ham")
    with pytest.raises(ValueError, match="2\\*\\*28"):
        store.resize(2**29)
    assert store.check() == [] and store.load().model.n_features_in_ == 2**16

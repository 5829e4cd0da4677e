"""Model files: round trips, atomic writes, and every way a file can be bad."""

from __future__ import annotations

import os
import sqlite3
import stat
import zlib
from pathlib import Path

import joblib
import numpy as np
import pytest

from spamlearn import Classifier, ModelFileError, __version__
from spamlearn.counts import BayesCounts
from spamlearn.store import FORMAT, load_classifier, read_header, save_classifier


@pytest.fixture
def trained(spam_messages, ham_messages) -> Classifier:
    clf = Classifier(n_features=2**14)
    for raw in spam_messages:
        clf.learn(raw, "spam")
    for raw in ham_messages:
        clf.learn(raw, "ham")
    return clf


def test_round_trip_gives_the_same_scores(tmp_path, trained, sample_spam, sample_ham):
    path = tmp_path / "m.joblib"
    trained.revision = 7
    save_classifier(trained, path)
    loaded = load_classifier(path)
    assert loaded.revision == 7
    np.testing.assert_array_equal(loaded.model.spam_count_, trained.model.spam_count_)
    for raw in (sample_spam, sample_ham):
        assert loaded.score(raw).decision == pytest.approx(trained.score(raw).decision)


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path, trained):
    path = tmp_path / "m.joblib"
    save_classifier(trained, path)
    inode = path.stat().st_ino
    save_classifier(trained, path)
    assert path.stat().st_ino != inode, "a new file must be renamed over the old one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.joblib"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640), (0o002, 0o644)])
def test_a_new_model_file_gets_the_mode_its_ledger_gets(tmp_path, trained, umask, mode):
    """0644 less the umask, as SQLite creates the ledger beside it: a fixed
    0644 made the users' mail, distilled, world-readable where the admin's
    umask 077 kept the ledger 0600."""
    path = tmp_path / "m.joblib"
    old = os.umask(umask)
    try:
        save_classifier(trained, path)
        ledger = sqlite3.connect(tmp_path / "m.ledger")
        ledger.execute("CREATE TABLE t (x)")
        ledger.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "m.ledger").stat().st_mode) == mode


def test_a_replaced_model_file_keeps_its_mode_whatever_the_umask(tmp_path, trained):
    path = tmp_path / "m.joblib"
    save_classifier(trained, path)
    os.chmod(path, 0o640)
    old = os.umask(0o077)
    try:
        save_classifier(trained, path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_truncated_file_is_a_clear_error(tmp_path, trained):
    path = tmp_path / "m.joblib"
    save_classifier(trained, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_classifier(path)


@pytest.mark.parametrize("content", [b"", b"hello, I am not a model", b"\x80\x04garbage", os.urandom(4096)])
def test_foreign_files_are_refused(tmp_path, content):
    path = tmp_path / "m.joblib"
    path.write_bytes(content)
    with pytest.raises(ModelFileError):
        load_classifier(path)


def test_a_joblib_file_of_something_else_is_refused(tmp_path):
    path = tmp_path / "m.joblib"
    joblib.dump({"weights": [1, 2, 3]}, path)
    with pytest.raises(ModelFileError, match="not a spamlearn model"):
        load_classifier(path)


def _saved_changed(tmp_path, classifier: Classifier, change) -> Path:
    """``classifier`` saved, then its file's dict edited by ``change(data)``."""
    path = tmp_path / "m.joblib"
    save_classifier(classifier, path)
    data = joblib.load(path)
    change(data)
    joblib.dump(data, path)
    return path


def test_another_format_version_is_refused(tmp_path, trained):
    path = _saved_changed(tmp_path, trained, lambda data: data.update(format_version=99))
    with pytest.raises(ModelFileError, match="format version 99"):
        read_header(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no model file"):
        load_classifier(tmp_path / "nope.joblib")


def test_read_only_folder_is_a_clear_error_and_keeps_the_model(read_only_folder, trained, sample_spam):
    path = read_only_folder.path / "m.joblib"
    save_classifier(trained, path)
    before = path.read_bytes()
    read_only_folder.freeze()
    with pytest.raises(ModelFileError, match="cannot write model file"):
        save_classifier(trained, path)
    assert path.read_bytes() == before
    assert load_classifier(path).score(sample_spam).spam_prob > 0.5


def test_write_failure_keeps_the_old_file(tmp_path, trained, monkeypatch):
    path = tmp_path / "m.joblib"
    save_classifier(trained, path)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("spamlearn.store.joblib.dump", disk_full)
    with pytest.raises(ModelFileError, match="No space left"):
        save_classifier(trained, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.joblib"]


def test_file_holds_plain_data_only(tmp_path, trained):
    path = tmp_path / "m.joblib"
    save_classifier(trained, path)
    data = joblib.load(path)
    assert data["format"] == FORMAT
    allowed = (int, float, str, dict, np.ndarray, type(None))
    assert all(isinstance(v, allowed) for v in data.values())


def test_unknown_tokenizer_options_name_the_version_problem(tmp_path, trained):
    path = _saved_changed(tmp_path, trained, lambda data: data["tokenizer"].update(a_future_option=True))
    wrote = f"written by spamlearn {__version__}: read it with that version"
    with pytest.raises(ModelFileError, match=f"a_future_option.*{wrote}"):
        load_classifier(path)


def _with(data: dict, key: str, value) -> dict:
    data = dict(data)
    if key.startswith("tokenizer."):
        data["tokenizer"] = {**data["tokenizer"], key.split(".", 1)[1]: value}
    else:
        data[key] = value(data) if callable(value) else value
    return data


@pytest.mark.parametrize("key, value", [
    ("n_features", 2**33), ("n_features", 0), ("n_features", "big"), ("n_features", True),
    ("n_spam", "abc"), ("n_spam", -1), ("n_ham", 1.5), ("revision", "abc"), ("revision", -3),
    ("trained_at", 1e300), ("trained_at", "yesterday"),
    ("tokenizer.max_word_length", "16"), ("tokenizer.header_names", 1), ("tokenizer.word_pairs", 2),
    ("model_params", [1, 2]),
    ("spam", lambda d: -d["spam"].astype(np.int64)),
    ("spam", lambda d: np.full(len(d["spam"]), np.nan)),
    ("spam", lambda d: d["spam"] + d["n_spam"] + 1),          # more messages than were learned
    ("index", lambda d: d["index"][::-1].copy()),            # out of order
    ("index", lambda d: np.concatenate([d["index"][:1], d["index"][:-1]])),   # a bucket twice
    ("index", lambda d: d["index"] + d["n_features"]),       # past the last bucket
    ("ham", lambda d: d["ham"][:-1]),                         # arrays of different lengths
])
def test_a_model_file_with_bad_values_is_corrupt_not_a_crash(tmp_path, trained, key, value):
    """Right keys, wrong values: a clear "corrupt" (exit 74 at the command
    line), never a MemoryError, an overflow or counts a learner saves over."""
    path = tmp_path / "m.joblib"
    save_classifier(trained, path)
    joblib.dump(_with(joblib.load(path), key, value), path)
    with pytest.raises(ModelFileError, match="is corrupt"):
        load_classifier(path)
    with pytest.raises(ModelFileError, match="is corrupt"):
        read_header(path)


def test_unknown_model_parameters_name_the_version_problem(tmp_path, trained):
    path = _saved_changed(tmp_path, trained, lambda data: data["model_params"].update(a_future_parameter=3))
    wrote = f"written by spamlearn {__version__}: read it with that version"
    with pytest.raises(ModelFileError, match=f"a_future_parameter.*{wrote}"):
        load_classifier(path)


def test_a_model_from_before_a_parameter_existed_scores_with_todays_default(tmp_path, trained, sample_spam):
    # Model parameters only shape scoring: an older file without one takes
    # the current default and scores as a new file with the same counts.
    def change(data):
        del data["model_params"]["support_sightings"]
        del data["model_params"]["family_balance"]

    path = _saved_changed(tmp_path, trained, change)
    old = load_classifier(path)
    assert old.model.support_sightings == BayesCounts().support_sightings
    assert old.model.family_balance == BayesCounts().family_balance
    assert old.score(sample_spam).decision == trained.score(sample_spam).decision


def test_a_model_from_before_an_option_existed_tokenizes_as_it_learned(tmp_path, trained):
    # Options added since (the sender tokens, fewer header-value words)
    # read as off in an older file, not as today's defaults.
    def change(data):
        for name in ("header_value_words", "date_zone", "message_id_shape", "from_address",
                     "content_type_raw"):
            del data["tokenizer"][name]

    path = _saved_changed(tmp_path, trained, change)
    options = load_classifier(path).tokenizer.options
    assert options.header_value_words == 20
    assert not (options.date_zone or options.message_id_shape or options.from_address
                or options.content_type_raw)
    assert trained.tokenizer.options.date_zone      # the file as written keeps today's


@pytest.mark.parametrize("change", [{"hash": "blake2b"}, {"format_version": 1}])
def test_a_model_hashed_with_another_hash_is_refused(tmp_path, trained, change):
    # Its buckets mean other tokens: scoring with it would be noise.
    path = _saved_changed(tmp_path, trained, lambda data: data.update(change))
    with pytest.raises(ModelFileError, match="blake2b"):
        read_header(path)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("compress", [0, ("zlib", 3)])
def test_a_crafted_model_file_is_refused_without_running_its_code(tmp_path, compress):
    # A pickle that calls a function on load (here: creates a file).
    marker = tmp_path / "it-ran"
    path = tmp_path / "m.joblib"
    joblib.dump({"format": "spamlearn-model", "payload": _RunsCode(marker)}, path, compress=compress)
    with pytest.raises(ModelFileError, match="truncated or corrupt|not a spamlearn model"):
        read_header(path)
    assert not marker.exists()


def test_a_model_file_that_inflates_without_end_is_refused(tmp_path, monkeypatch):
    import spamlearn.store as store_module

    monkeypatch.setattr(store_module, "_MAX_PICKLE_BYTES", 1 << 20)
    path = tmp_path / "m.joblib"
    path.write_bytes(zlib.compress(b"\x80" + b"\0" * (8 << 20)))
    with pytest.raises(ModelFileError, match="corrupt"):
        read_header(path)


def test_a_model_with_a_ledger_is_not_saved_over_behind_the_ledgers_back(tmp_path, trained, sample_spam):
    """An embedding filter's ``learn`` + ``save_classifier`` on the model the
    command line learns into: the ledger then held one message fewer than
    the model, for good (``info --check`` exit 74; ``forget`` said "not
    known"), and a learner running meanwhile lost its messages."""
    from spamlearn.modelstore import ModelStore

    path = tmp_path / "m.joblib"
    store = ModelStore(path, n_features=2**14)
    store.learn(sample_spam, "spam")
    before = path.read_bytes()
    classifier = store.load()
    classifier.learn(sample_spam.replace(b"Subject:", b"Subject: again"), "spam")
    with pytest.raises(ModelFileError, match=r"has a ledger .*m\.ledger.*ModelStore"):
        save_classifier(classifier, path)
    with pytest.raises(ModelFileError, match="has a ledger"):
        save_classifier(classifier, str(path))
    assert path.read_bytes() == before and store.check() == []
    save_classifier(classifier, tmp_path / "copy.joblib")      # a model of its own: no ledger
    assert load_classifier(tmp_path / "copy.joblib").n_spam == 2

"""Settings: file, then environment, then flags; every bad value is a ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from spamlearn.config import load_settings
from spamlearn.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "spamlearn.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(isolated_home):
    settings = load_settings()
    assert settings.config_file is None
    assert settings.model_path == isolated_home / "data" / "spamlearn" / "model.joblib"
    assert settings.effective_ledger_path == settings.model_path.with_name("model.ledger")
    assert (settings.ham_cutoff, settings.spam_cutoff) == (0.20, 0.90)


def test_file_then_environment_then_overrides(tmp_path, monkeypatch):
    config = write(tmp_path, '[model]\npath = "models/m.joblib"\nham_cutoff = 0.1\nspam_cutoff = 0.8\n')
    settings = load_settings(config)
    assert settings.model_path == tmp_path / "models" / "m.joblib", "relative to the config file"
    assert settings.ham_cutoff == 0.1
    monkeypatch.setenv("SPAMLEARN_SPAM_CUTOFF", "0.95")
    assert load_settings(config).spam_cutoff == 0.95
    assert load_settings(config, spam_cutoff=0.99).spam_cutoff == 0.99
    monkeypatch.setenv("SPAMLEARN_CONFIG", str(config))
    assert load_settings().config_file == config


@pytest.mark.parametrize("text, message", [
    ("[model]\nham_cutoff = 0.9\nspam_cutoff = 0.2\n", "cutoffs"),
    ("[model]\nscan_limit = 'lots'\n", "scan_limit"),
    ("[model]\nunknown_key = 1\n", "unknown key"),
    ("[model\n", "config file"),
    ("model = 3\n", "must be a table"),
])
def test_bad_files_are_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_per_user_models(tmp_path):
    config = write(tmp_path, '[model]\npath = "/srv/m.joblib"\n[users]\ndir = "/srv/users"\nown_model = ["alice"]\n'
                             '[[accounts]]\nusername = "bob"\nown_model = true\n'
                             '[[accounts]]\nusername = "carol"\n')
    settings = load_settings(config)
    assert settings.model_path_for("alice") == Path("/srv/users/alice.joblib")
    assert settings.model_path_for("bob") == Path("/srv/users/bob.joblib")
    assert settings.model_path_for("carol") == Path("/srv/m.joblib")
    assert settings.section("accounts")[0]["username"] == "bob"
    with pytest.raises(ConfigError, match="invalid user"):
        settings.user_model_path("../etc/passwd")

"""The [server] section, its environment variables and flags; `spamlearn serve`'s refusals."""

from __future__ import annotations

import socket

import joblib
import pytest
from typer.testing import CliRunner

from spamlearn import __version__
from spamlearn.cli import ExitCode, app
from spamlearn.config import load_settings
from spamlearn.errors import ConfigError
from spamlearn.modelstore import ModelStore
from spamlearn.server_settings import (
    DEFAULT_PORT,
    ServerSettings,
    default_workers,
    load_server_settings,
)
from spamlearn.store import read_header

TOKEN = "0123456789abcdef0123"


def config(tmp_path, text, mode=0o600):
    path = tmp_path / "spamlearn.toml"
    path.write_text(text)
    path.chmod(mode)
    return load_settings(path)


def secret(tmp_path, name, text, mode=0o600):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_defaults_listen_on_loopback_without_learning(tmp_path):
    server = load_server_settings(load_settings(), env={})
    assert (server.host, server.port) == ("127.0.0.1", DEFAULT_PORT) and server.is_loopback
    assert server.workers == default_workers() and 1 <= server.workers <= 4
    assert server.max_body_size == 25 * 1024 * 1024
    assert server.learn_token is None and not server.learning_enabled and server.score_token is None
    assert server.reload_interval == 1.0 and server.per_user


def test_file_then_environment_then_flags(tmp_path):
    settings = config(tmp_path, '[server]\nhost = "0.0.0.0"\nport = 9000\nworkers = 3\n'
                                'reload_interval = 5\nmax_body_size = 10485760\nper_user = false\n')
    server = load_server_settings(settings, env={})
    assert (server.host, server.port, server.workers, server.reload_interval) == ("0.0.0.0", 9000, 3, 5.0)
    assert server.max_body_size == 10485760 and not server.per_user and not server.is_loopback
    env = {"SPAMLEARN_SERVER_PORT": "9001", "SPAMLEARN_SERVER_WORKERS": "2",
           "SPAMLEARN_SERVER_HOST": "::1", "SPAMLEARN_SERVER_RELOAD_INTERVAL": "0.5",
           "SPAMLEARN_SERVER_MAX_BODY_SIZE": "2048"}
    server = load_server_settings(settings, env=env)
    assert (server.host, server.port, server.workers, server.reload_interval, server.max_body_size) == \
        ("::1", 9001, 2, 0.5, 2048)
    assert load_server_settings(settings, env=env, port=9002, workers=None).port == 9002


def test_tokens_from_files_relative_to_the_config_and_from_the_environment(tmp_path):
    secret(tmp_path, "learn.token", f"{TOKEN}\n")
    secret(tmp_path, "score.token", f"  score-{TOKEN}  ")
    settings = config(tmp_path, '[server]\nlearn_token_file = "learn.token"\n'
                                'score_token_file = "score.token"\n')
    server = load_server_settings(settings, env={})
    assert server.learn_token == TOKEN and server.score_token == f"score-{TOKEN}"
    other = secret(tmp_path, "other.token", f"other-{TOKEN}")
    env = {"SPAMLEARN_SERVER_LEARN_TOKEN_FILE": str(other), "SPAMLEARN_SERVER_SCORE_TOKEN": f"env-{TOKEN}"}
    server = load_server_settings(settings, env=env)
    assert server.learn_token == f"other-{TOKEN}" and server.score_token == f"env-{TOKEN}"


def test_a_token_never_shows_in_the_settings_repr(tmp_path):
    server = ServerSettings(learn_token=TOKEN, score_token=f"s{TOKEN}", workers=1)
    assert TOKEN not in repr(server) and TOKEN not in str(server)


def test_a_token_in_a_file_others_can_read_is_refused(tmp_path):
    secret(tmp_path, "learn.token", TOKEN, mode=0o644)
    settings = config(tmp_path, '[server]\nlearn_token_file = "learn.token"\n')
    with pytest.raises(ConfigError, match="readable by its group or others.*chmod 600"):
        load_server_settings(settings, env={})
    open_config = config(tmp_path, f'[server]\nlearn_token = "{TOKEN}"\n', mode=0o644)
    with pytest.raises(ConfigError, match="config file .* readable by its group or others"):
        load_server_settings(open_config, env={})
    secret(tmp_path, "group.token", TOKEN, mode=0o640)       # root:spamlearn 0640: refused too
    grouped = config(tmp_path, '[server]\nlearn_token_file = "group.token"\n')
    with pytest.raises(ConfigError, match=r"group\.token holds a token but is readable by its group"):
        load_server_settings(grouped, env={})
    private = config(tmp_path, f'[server]\nlearn_token = "{TOKEN}"\n', mode=0o600)
    assert load_server_settings(private, env={}).learn_token == TOKEN


@pytest.mark.parametrize("text, message", [
    ("[server]\nport = 70000\n", "port"),
    ("[server]\nport = \"http\"\n", "port must be an integer"),
    ("[server]\nworkers = 0\n", "workers"),
    ("[server]\nmax_body_size = 10\n", "max_body_size"),
    ("[server]\nreload_interval = -1\n", "reload_interval"),
    ("[server]\nper_user = \"perhaps\"\n", "true or false"),
    ("[server]\nlisten = \"x\"\n", "unknown key"),
    ("[server]\nlearn_token = \"short\"\n", "at least 16"),
    ("[server]\nscore_token = \"caf\u00e9-0123456789abcdef\"\n", "score_token must be printable ASCII"),
    ("[server]\nlearn_token_file = \"missing.token\"\n", "missing.token"),
    ("server = 3\n", "must be a table"),
])
def test_bad_server_settings_are_config_errors(tmp_path, text, message):
    settings = config(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_server_settings(settings, env={})


def test_an_empty_token_file_is_refused(tmp_path):
    secret(tmp_path, "learn.token", "\n")
    settings = config(tmp_path, '[server]\nlearn_token_file = "learn.token"\n')
    with pytest.raises(ConfigError, match="is empty"):
        load_server_settings(settings, env={})


def test_a_folder_named_as_token_file_is_refused_as_a_folder(tmp_path):
    """Not "readable by its group or others (mode 755); chmod 600 it", which
    an admin who named /etc/spamlearn would follow on the folder."""
    (tmp_path / "tokens").mkdir(mode=0o755)
    settings = config(tmp_path, '[server]\nscore_token_file = "tokens"\n')
    with pytest.raises(ConfigError, match=r"tokens is a folder, not the file holding the token$"):
        load_server_settings(settings, env={})
    with pytest.raises(ConfigError, match="SPAMLEARN_SERVER_LEARN_TOKEN_FILE .* is a folder"):
        load_server_settings(load_settings(), env={"SPAMLEARN_SERVER_LEARN_TOKEN_FILE": str(tmp_path)})


# -- the command --------------------------------------------------------------------------------
runner = CliRunner()


def test_serve_has_help():
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "/score" in result.output


def test_serve_with_a_bad_config_exits_78_with_one_line(tmp_path):
    path = tmp_path / "spamlearn.toml"
    path.write_text("[server]\nworkers = 0\n")
    result = runner.invoke(app, ["--config", str(path), "serve"])
    assert result.exit_code == ExitCode.CONFIG
    assert result.output.strip().splitlines() == [
        f"spamlearn: error: config file {path}: [server] workers must be 1..64, got 0"]


@pytest.mark.parametrize("source, expected", [
    ("file", "config file {path}: [server] max_body_size must be at least 1024 bytes, got 10"),
    ("env", "SPAMLEARN_SERVER_MAX_BODY_SIZE must be at least 1024 bytes, got 10"),
    ("flag", "--max-body-size must be at least 1024 bytes, got 10"),
])
def test_a_value_out_of_range_names_where_it_came_from(tmp_path, source, expected):
    """The same range rule, three places to set it: the message says which to fix."""
    settings = config(tmp_path, "[server]\nmax_body_size = 10\n" if source == "file" else "")
    path = tmp_path / "spamlearn.toml"
    env = {"SPAMLEARN_SERVER_MAX_BODY_SIZE": "10"} if source == "env" else {}
    flags = {"max_body_size": 10} if source == "flag" else {}
    with pytest.raises(ConfigError) as caught:
        load_server_settings(settings, env=env, **flags)
    assert str(caught.value) == expected.format(path=path)


def test_serve_on_a_taken_port_exits_69_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port), "--workers", "1"])
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


def test_serve_with_a_corrupt_model_exits_74(tmp_path):
    model = tmp_path / "model.joblib"
    model.write_bytes(b"\x80 not a model")
    result = runner.invoke(app, ["--model", str(model), "serve", "--workers", "1"])
    assert result.exit_code == ExitCode.IOERR and "corrupt" in result.output


def write_newer_model(model, spam_messages, ham_messages):
    """A model from a newer spamlearn: a tokenizer option unknown here, in a
    header that reads well; only the full load refuses it."""
    store = ModelStore(model, n_features=2**16)
    with store.session(source="test") as session:
        for raw in spam_messages:
            session.learn(raw, "spam")
        for raw in ham_messages:
            session.learn(raw, "ham")
    newer = read_header(model)
    newer["tokenizer"]["bogus_option"] = 1
    joblib.dump(newer, model, compress=("zlib", 3))      # as save_classifier writes it


@pytest.mark.parametrize("min_messages", [
    2,
    # Below min_messages: the check read the header alone and passed over
    # it to the default model, while the worker loaded it whole to count
    # its messages, and refused it (a reviewer's 2 spam / 2 ham model).
    5,
])
def test_serve_with_a_model_that_only_the_full_load_refuses_exits_74_with_one_line(
        tmp_path, spam_messages, ham_messages, min_messages, caplog):
    """The start-up check passed it, and the worker failed with a traceback
    (exit 3; every worker degraded, or exit 0, with several)."""
    model = tmp_path / "model.joblib"
    write_newer_model(model, spam_messages, ham_messages)
    path = tmp_path / "spamlearn.toml"
    path.write_text(f'[model]\npath = "{model}"\nmin_messages = {min_messages}\n')
    result = runner.invoke(app, ["--config", str(path), "serve", "--workers", "1", "--port", "0"])
    assert result.exit_code == ExitCode.IOERR, result.output
    assert result.output.strip().splitlines() == [
        f"spamlearn: error: model file {model} uses tokenizer options this spamlearn "
        f"({__version__}) does not know: bogus_option; it was written by spamlearn "
        f"{__version__}: read it with that version or a later one, or restore a backup made before"]
    assert "cannot load" not in caplog.text, "the error once, not logged too"


def test_serve_with_a_token_that_is_not_ascii_exits_78_without_showing_it(tmp_path):
    """Starlette reads the Authorization header as latin-1 and curl sends
    UTF-8: a token with an "é" was accepted, and no request could ever
    present it."""
    token = "s\u00e9same-0123456789abcdef"
    missing = tmp_path / "missing.joblib"       # checked after the settings: it must not come to that
    result = runner.invoke(app, ["--model", str(missing), "serve", "--workers", "1"],
                           env={"SPAMLEARN_SERVER_LEARN_TOKEN": token})
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert result.output.strip().splitlines() == [
        "spamlearn: error: SPAMLEARN_SERVER_LEARN_TOKEN must be printable ASCII, as HTTP header "
        "values are (e.g. from `openssl rand -hex 24`)"]


def test_serve_with_an_unknown_log_level_is_a_usage_error():
    result = runner.invoke(app, ["serve", "--log-level", "loud"])
    assert result.exit_code == ExitCode.USAGE
    assert "unknown --log-level 'loud'" in result.output and "trace" in result.output

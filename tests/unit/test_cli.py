"""The command line, as an admin or a cron job uses it."""

from __future__ import annotations

import json
import mailbox
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from spamlearn.cli import ExitCode, app
from spamlearn.headers import add_verdict_headers

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture
def model(tmp_path):
    return tmp_path / "model.joblib"


@pytest.fixture
def trained_model(model, tmp_path, spam_messages, ham_messages, sample_spam, sample_ham):
    spam_dir = tmp_path / "spam"
    ham_dir = tmp_path / "ham"
    spam_dir.mkdir()
    ham_dir.mkdir()
    for i, raw in enumerate(spam_messages + [sample_spam]):
        (spam_dir / f"{i}.eml").write_bytes(raw)
    for i, raw in enumerate(ham_messages + [sample_ham]):
        (ham_dir / f"{i}.eml").write_bytes(raw)
    assert run("--model", model, "learn", "--spam", spam_dir).exit_code == 0
    assert run("--model", model, "learn", "--ham", ham_dir).exit_code == 0
    return model


@pytest.mark.parametrize("command", ["learn", "forget", "score", "filter", "info", "eval", "exit-codes",
                                     "backup", "restore", "resize"])
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output


def _commands(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("path, command", list(_commands(typer.main.get_command(app))),
                         ids=lambda value: " ".join(value) if isinstance(value, tuple) else "")
def test_a_config_table_named_in_help_is_shown(path, command):
    """Rich reads "[server]" in a help text as markup and drops it: serve --help
    said "With --spamd-listen (or  spamd_listen)".  A table is written \\[server]."""
    texts = [command.help or ""] + [getattr(param, "help", None) or "" for param in command.params]
    eaten = [match.group() for text in texts for match in re.finditer(r"(?<!\\)\[[a-z_]+\]", text)]
    assert not eaten, f"{' '.join(path)} --help loses {eaten}: escape them as \\[name]"


@pytest.mark.parametrize("path, command", list(_commands(typer.main.get_command(app))),
                         ids=lambda value: " ".join(value) if isinstance(value, tuple) else "")
def test_a_help_text_keeps_its_lines_within_the_screen(path, command):
    """Rich keeps a help text's line breaks and wraps a longer line at 80
    columns: `sieve drain --help` printed "...the shared one.  Exit 0" and
    then "also when" alone on the next line.  A line followed by another of
    its paragraph fits the 78 columns inside the margins."""
    for paragraph in (command.help or "").split("\n\n"):
        lines = paragraph.splitlines()
        long = [line for line in lines[:-1] if len(line) > 78]
        assert not long, f"{' '.join(path)} --help breaks {long}"


_BLAS_THREADS = """
import sys
import spamlearn
assert "numpy" not in sys.modules, "import spamlearn imports numpy"
import spamlearn.cli
from threadpoolctl import threadpool_info
print(max(pool["num_threads"] for pool in threadpool_info() if pool["internal_api"] == "openblas"))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts one thread on one core anyway")
@pytest.mark.parametrize("setting, threads", [(None, 1), ("2", 2)])
def test_the_command_starts_numpy_with_one_blas_thread(setting, threads):
    """numpy's OpenBLAS started a thread per core at import, spinning ~0.1 s of
    CPU at every start of the command for nothing; an admin's setting wins."""
    pytest.importorskip("threadpoolctl")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    if setting:
        env["OPENBLAS_NUM_THREADS"] = setting
    found = subprocess.run([sys.executable, "-c", _BLAS_THREADS], capture_output=True, text=True, env=env,
                           timeout=60)
    assert found.returncode == 0, found.stderr
    if not found.stdout.strip():
        pytest.skip("numpy is not built on OpenBLAS here")
    assert int(found.stdout) == threads


def test_serve_help_names_the_server_table():
    result = run("serve", "--help")
    assert result.exit_code == 0
    assert "(or [server] spamd_listen)" in " ".join(result.output.split())


def test_score_falls_back_to_the_default_model(tmp_path):
    result = run("score", "tests/fixtures/sample-spam.eml", "tests/fixtures/sample-ham.eml")
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.strip().splitlines()]
    assert lines[0][1] == "spam" and lines[1][1] == "ham"


def test_trying_a_model_out_leaves_the_configured_ledger_alone(tmp_path, spam_messages, sample_ham):
    """``--model FILE`` with a config that names its ledger: the trial model
    paired with that ledger, and the "repair" deleted the configured model's rows."""
    main = tmp_path / "main"
    config = tmp_path / "c.toml"
    config.write_text(f'[model]\npath = "{main / "m.joblib"}"\nledger = "{main / "m.ledger"}"\n')
    spam = tmp_path / "spam.eml"
    spam.write_bytes(spam_messages[0])
    ham = tmp_path / "ham.eml"
    ham.write_bytes(sample_ham)
    assert run("--config", config, "learn", "--spam", spam).exit_code == 0
    trial = tmp_path / "trial.joblib"
    assert run("--config", config, "--model", trial, "learn", "--ham", ham).exit_code == 0
    assert (tmp_path / "trial.ledger").exists()
    for extra in ((), ("--model", trial)):
        checked = run("--config", config, *extra, "info", "--check")
        assert checked.exit_code == 0, checked.output
    forgot = run("--config", config, "forget", spam)
    assert forgot.exit_code == 0 and "forgot 1" in forgot.output, forgot.output


def test_a_model_named_through_a_symlink_or_a_hard_link_loses_nothing(tmp_path, spam_messages, ham_messages):
    """A symlink is the file it names: one lock, one ledger, and the link
    stays a link.  A hard link is another model (a learn through it would
    replace that name only): without a ledger of its own it is refused, and
    the configured pair is untouched.  (A helper's review: learning through
    a link split the model, and the next learner deleted what it learned.)"""
    main = tmp_path / "main"
    config = tmp_path / "c.toml"
    config.write_text(f'[model]\npath = "{main / "m.joblib"}"\nledger = "{main / "m.ledger"}"\n')
    messages = []
    for i, raw in enumerate(spam_messages[:3] + ham_messages[:3]):
        messages.append(tmp_path / f"{i}.eml")
        messages[-1].write_bytes(raw)
    assert run("--config", config, "learn", "--ham", messages[3]).exit_code == 0
    link = tmp_path / "link.joblib"
    link.symlink_to(main / "m.joblib")
    via_link = run("--config", config, "--model", link, "learn", "--spam", *messages[:3])
    assert via_link.exit_code == 0 and "learned 3 as spam" in via_link.output, via_link.output
    assert link.is_symlink() and not (tmp_path / "link.ledger").exists()
    assert not (tmp_path / "link.joblib.lock").exists()
    plain = run("--config", config, "learn", "--ham", *messages[4:])
    assert plain.exit_code == 0 and "learned 2 as ham" in plain.output, plain.output
    info = run("--config", config, "info", "--check", "--json")
    assert info.exit_code == 0, info.output
    details = json.loads(info.output)
    assert (details["n_spam"], details["n_ham"]) == (3, 3), details
    hard = tmp_path / "hard.joblib"
    os.link(main / "m.joblib", hard)
    before = (main / "m.joblib").read_bytes()
    refused = run("--config", config, "--model", hard, "learn", "--spam", messages[3])
    assert refused.exit_code == ExitCode.IOERR and "has no ledger" in refused.output, refused.output
    assert (main / "m.joblib").read_bytes() == before
    assert run("--config", config, "info", "--check").exit_code == 0


def test_learn_reports_and_is_idempotent(model, tmp_path, sample_spam):
    (tmp_path / "a.eml").write_bytes(sample_spam)
    first = run("--model", model, "learn", "--spam", tmp_path / "a.eml")
    assert first.exit_code == 0 and "learned 1 as spam" in first.output
    second = run("--model", model, "learn", "--spam", tmp_path / "a.eml")
    assert "learned 0 as spam" in second.output and "already known 1" in second.output
    relabel = run("--model", model, "learn", "--ham", tmp_path / "a.eml")
    assert "relabelled 1" in relabel.output


def test_learn_needs_exactly_one_label(model, sample_spam):
    assert run("--model", model, "learn", "-", input=sample_spam).exit_code == ExitCode.USAGE
    assert run("--model", model, "learn", "--spam", "--ham", "-",
               input=sample_spam).exit_code == ExitCode.USAGE


def test_learn_from_mbox_and_maildir(model, tmp_path, spam_messages, ham_messages):
    box = mailbox.mbox(tmp_path / "spam.mbox")
    for raw in spam_messages:
        box.add(raw)
    box.close()
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    for raw in ham_messages:
        maildir.add(raw)
    assert "learned 4 as spam" in run("--model", model, "learn", "--spam", tmp_path / "spam.mbox").output
    assert "learned 4 as ham" in run("--model", model, "learn", "--ham", tmp_path / "Maildir").output


@pytest.mark.parametrize("others", [0, 1], ids=["alone in its mbox", "one of two"])
def test_a_message_from_an_mbox_is_the_same_message_as_its_maildir_copy(model, tmp_path, others):
    """An mbox writer quotes body lines that start with "From " (">From ");
    read back, the message must be the one the Maildir holds, or it is
    counted twice, as ham and as spam at once."""
    quoted = (b"From: alice@example.org\nSubject: lunch\nMessage-ID: <1@x>\n\nHi Bob,\n"
              b"From what I hear the place is good.\n")
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    maildir.add(quoted)
    box = mailbox.mbox(tmp_path / "export.mbox")
    for raw in [quoted] + [b"From: carol@example.org\nSubject: other\n\nhello\n"] * others:
        box.add(raw)
    box.close()
    assert b"\n>From what" in (tmp_path / "export.mbox").read_bytes()
    assert "learned 1 as ham" in run("--model", model, "learn", "--ham", tmp_path / "Maildir").output
    result = run("--model", model, "learn", "--spam", tmp_path / "export.mbox")
    assert "relabelled 1" in result.output, result.output
    assert "forgot 1" in run("--model", model, "forget", tmp_path / "Maildir").output


def test_a_file_with_quoted_from_lines_a_0_2_version_learned_is_known_after_the_upgrade(model, tmp_path,
                                                                                        monkeypatch):
    """Before, the quoted lines went into the digest as they were (the 58
    such files of the SpamAssassin corpus were learned a second time)."""
    import spamlearn.mailsource as mailsource
    import spamlearn.modelstore as modelstore
    from spamlearn.message import legacy_message_digest

    single = tmp_path / "00042.eml"             # one message with its envelope line, as the corpus has
    single.write_bytes(b"From spammer@example.net  Mon Sep  2 03:14:15 2002\nFrom: s@example.net\n"
                       b"Subject: deal\n\nHello,\n>From the desk of the director: act now\n")
    box = mailbox.mbox(tmp_path / "two.mbox")
    for n in (1, 2):
        box.add(b"From: a%d@example.org\nSubject: memo\n\nFrom the desk of %d: lunch\n" % (n, n))
    box.close()
    with monkeypatch.context() as old_version:
        old_version.setattr(mailsource, "mbox_unquoted", lambda raw: raw)
        old_version.setattr(modelstore, "message_digest", legacy_message_digest)
        learned = run("--model", model, "learn", "--spam", single, tmp_path / "two.mbox")
        assert "learned 3 as spam" in learned.output
    again = run("--model", model, "learn", "--spam", single, tmp_path / "two.mbox")
    assert "learned 0 as spam" in again.output and "already known 3" in again.output, again.output
    relabel = run("--model", model, "learn", "--ham", tmp_path / "two.mbox")
    assert "relabelled 2" in relabel.output, relabel.output
    assert "1 spam, 2 ham" in run("--model", model, "info").output


def test_a_maildir_the_mail_server_renames_during_a_learn_is_learned_whole(model, tmp_path, monkeypatch,
                                                                          spam_messages):
    """Dovecot moves new/ to cur/ when a client opens the folder, and
    renames a file in cur/ when its flags change: a learn that listed the
    old names reads the new ones, and a message expunged meanwhile is no
    error."""
    import spamlearn.mailsource as mailsource

    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for n, raw in enumerate(spam_messages[:3]):
        (maildir / "new" / f"17000000{n}.M1P1.host").write_bytes(raw)
    (maildir / "cur" / "170000009.M9P9.host:2,").write_bytes(spam_messages[3])
    read = mailsource.read_regular

    def renamed_before_the_first_read(name):
        if (maildir / "new" / "170000000.M1P1.host").exists():     # the listing is done: rename now
            os.rename(maildir / "new" / "170000000.M1P1.host", maildir / "cur" / "170000000.M1P1.host:2,S")
            os.rename(maildir / "new" / "170000001.M1P1.host", maildir / "cur" / "170000001.M1P1.host")
            os.rename(maildir / "cur" / "170000009.M9P9.host:2,",
                      maildir / "cur" / "170000009.M9P9.host:2,RS")
            os.unlink(maildir / "new" / "170000002.M1P1.host")         # expunged
        return read(name)

    monkeypatch.setattr(mailsource, "read_regular", renamed_before_the_first_read)
    result = run("--model", model, "learn", "--spam", maildir)
    assert result.exit_code == 0, result.output
    assert "learned 3 as spam" in result.output and "errors 0" in result.output


def test_learn_progress_counts_files_not_the_messages_of_an_mbox(model, tmp_path, monkeypatch,
                                                                 spam_messages):
    """The bar's total is the number of files; a four-message mbox and one
    plain file must advance it twice, not five times (past its end)."""
    import contextlib

    from spamlearn import cli_core

    box = mailbox.mbox(tmp_path / "spam.mbox")
    for raw in spam_messages:
        box.add(raw)
    box.close()
    (tmp_path / "one.eml").write_bytes(spam_messages[0].replace(b"Subject:", b"Subject: again", 1))
    seen = {}

    @contextlib.contextmanager
    def recording_progress(description, total, enabled=None):
        seen["total"], seen["advanced"] = total, 0

        def advance(n=1):
            seen["advanced"] += n
        yield advance

    monkeypatch.setattr(cli_core, "progress", recording_progress)
    result = run("--model", model, "learn", "--spam", tmp_path / "spam.mbox", tmp_path / "one.eml")
    assert "learned 5 as spam" in result.output, result.output
    assert seen == {"total": 2, "advanced": 2}


def test_score_json_and_explain(trained_model, sample_spam):
    result = run("--model", trained_model, "score", "--json", "--explain", "-", input=sample_spam)
    assert result.exit_code == 0
    record = json.loads(result.output)
    assert record["path"] == "-" and record["verdict"] == "spam" and 0.9 <= record["score"] <= 1
    assert record["clues"] and {"token", "spam_prob", "spam_count", "ham_count"} <= set(record["clues"][0])


def test_forget(trained_model, sample_spam):
    result = run("--model", trained_model, "forget", "-", input=sample_spam)
    assert result.exit_code == 0 and "forgot 1" in result.output
    info = json.loads(run("--model", trained_model, "info", "--json").output)
    assert info["n_spam"] == 4


def test_info_shows_files_counts_and_check(trained_model):
    result = run("--model", trained_model, "info", "--check")
    assert result.exit_code == 0, result.output
    assert str(trained_model) in result.output
    assert "5 spam, 5 ham" in result.output
    assert "check:          ok" in result.output


def test_info_check_says_when_there_is_nothing_to_check(tmp_path):
    # A path with no model or ledger (a fresh install, or a typo in a
    # monitoring check) is not an error, but it is said plainly.
    result = run("--model", tmp_path / "none" / "m.joblib", "info", "--check")
    assert result.exit_code == 0, result.output
    assert "ok (nothing learned yet: no model or ledger there)" in result.output


def test_filter_adds_headers_and_exits_by_verdict(trained_model, sample_spam, sample_ham):
    spam = run("--model", trained_model, "filter", input=sample_spam)
    assert spam.exit_code == 0
    assert spam.stdout_bytes.startswith(b"X-Spam-Flag: YES\n")
    assert spam.stdout_bytes.endswith(sample_spam)
    ham = run("--model", trained_model, "filter", input=sample_ham)
    assert ham.exit_code == ExitCode.FILTER_HAM
    # As SpamAssassin: X-Spam-Flag on spam only (spamass-milter takes the header for spam).
    assert b"X-Spam-Flag" not in ham.stdout_bytes
    assert ham.stdout_bytes.startswith(b"X-Spam-Status: No, score=") and b"required=5.0" in ham.stdout_bytes
    assert run("--model", trained_model, "filter", "--exit-zero", input=sample_ham).exit_code == 0


def test_filter_passes_mail_through_on_error(tmp_path, sample_spam):
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"\x80\x04not a model")
    result = run("--model", broken, "filter", input=sample_spam)
    assert result.exit_code == ExitCode.FILTER_ERROR
    assert result.stdout_bytes == sample_spam
    # A sender's verdict headers do not pass for ours, even then (--exit-zero
    # cannot tell an error from a verdict).
    forged = b"X-Spam-Flag: NO\nX-Spam-Verdict: ham\n" + sample_spam
    result = run("--model", broken, "filter", "--exit-zero", input=forged)
    assert result.exit_code == 0 and result.stdout_bytes == sample_spam
    assert "without its X-Spam-* headers" in result.stderr


def test_a_model_folder_the_filter_may_not_enter_is_a_clear_error(tmp_path, monkeypatch):
    from pathlib import Path

    from spamlearn.config import load_settings
    from spamlearn.defaults import choose_model_path
    from spamlearn.errors import ModelFileError

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    settings = load_settings(env={"SPAMLEARN_MODEL": str(tmp_path / "m.joblib")})
    monkeypatch.setattr(Path, "exists", denied)     # as the mail user, on a 0750 folder
    with pytest.raises(ModelFileError, match="Permission denied.*must be able to read the model's folder"):
        choose_model_path(settings)


@pytest.mark.parametrize("config", [b"# M\xfcller\n[model]\n", b"[users]\nown_model = 5\n"])
def test_filter_passes_mail_through_with_a_broken_config(tmp_path, sample_spam, config):
    """Whatever fails before scoring (here a config file that is not UTF-8,
    or holds a wrong type), the message comes out unchanged."""
    path = tmp_path / "spamlearn.toml"
    path.write_bytes(config)
    result = run("--config", path, "filter", input=sample_spam)
    assert result.exit_code == ExitCode.FILTER_ERROR
    assert result.stdout_bytes == sample_spam
    assert run("--config", path, "filter", "--exit-zero", input=sample_spam).exit_code == 0


@pytest.mark.parametrize("command", [("score",), ("learn", "--spam"), ("forget",)])
def test_stdin_given_twice_is_a_usage_error(command, sample_spam, model):
    result = run("--model", model, *command, "-", "-", input=sample_spam)
    assert result.exit_code == ExitCode.USAGE
    assert "can be given once" in result.output


def test_exit_codes_prints_the_table():
    result = run("exit-codes")
    assert result.exit_code == 0
    assert "75     EX_TEMPFAIL" in result.output and "3      ``filter``: error" in result.output


def _exit_code_rows(lines: list[str]) -> dict[str, str]:
    rows: dict[str, str] = {}
    code = ""
    for line in lines:
        if line[:1].strip():
            code, line = line[:7].strip(), line[7:]
        rows[code] = (rows.get(code, "") + " " + line.strip()).strip()
    return {c: re.sub(r"^EX_[A-Z]+: ", "", " ".join(m.replace("``", "`").split())) for c, m in rows.items()}


def test_exit_codes_prints_the_readmes_table():
    """Two copies of one table drifted apart (a helper's review: the
    command left out half of what the README says of 2, 78 and 128+N)."""
    printed = run("exit-codes").output.splitlines()
    printed = [line for line in printed[3:] if not line.startswith("=====")]
    readme = (Path(__file__).parents[2] / "README.md").read_text().splitlines()
    first = readme.index("| code | meaning |") + 2
    table = []
    for line in readme[first:]:
        if not line.startswith("|"):
            break
        code, meaning = line.strip().strip("|").split("|", 1)
        table.append(f"{code.strip():<7}{meaning.strip()}")
    assert _exit_code_rows(printed) == _exit_code_rows(table)


def test_an_unexpected_error_is_one_line_and_exit_70(tmp_path):
    """A bug is reported as such, not as a traceback (main(), the console script)."""
    import subprocess
    import sys

    code = ("import sys, spamlearn.cli, spamlearn.cli_core as c\n"
            "def boom(*a, **k): raise RuntimeError('boom')\n"
            "c.load_scoring_classifier = boom\n"
            "sys.argv = ['spamlearn', 'score', 'tests/fixtures/sample-ham.eml']\n"
            "from spamlearn.cli import main; main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == ExitCode.SOFTWARE
    assert "Traceback" not in proc.stderr
    assert "internal error" in proc.stderr and "RuntimeError: boom" in proc.stderr


def test_forged_verdict_headers_are_replaced(trained_model, sample_spam):
    forged = b"X-Spam-Flag: NO\nX-Spam-Verdict: ham\n" + sample_spam
    result = run("--model", trained_model, "filter", input=forged)
    assert result.stdout_bytes.count(b"X-Spam-Flag") == 1
    assert b"X-Spam-Flag: YES" in result.stdout_bytes


def test_verdict_headers_keep_crlf(sample_ham):
    from spamlearn.classifier import Label, Verdict

    crlf = sample_ham.replace(b"\n", b"\r\n")
    out = add_verdict_headers(crlf, Verdict(0.01, Label.HAM, -4.0))
    assert b"X-Spam-Status: No, score=-1.7 required=5.0 tests=SPAMLEARN_HAM autolearn=no\r\n" in out
    assert b"\n\n" not in out.replace(b"\r\n", b"")


@pytest.mark.parametrize("first", [b"X-Spam-Status: No, score=-2.0\n", b""])
def test_a_cr_in_the_body_of_an_lf_message_changes_nothing_in_its_headers(first):
    """The line end is the header lines' own: one CR at the end of a body line
    (a sender can put it there) made an LF header block one "line", dropped
    whole if it began with X-Spam-, or kept a forged X-Spam-Flag: NO."""
    from spamlearn.classifier import Label, Verdict

    raw = (first + b"From: Anna <anna@example.net>\nSubject: dinner\nX-Spam-Flag: NO\n"
           b"MIME-Version: 1.0\n\nSee you at 7.\r\nAnna\n")
    out = add_verdict_headers(raw, Verdict(0.99, Label.SPAM, 5.0))
    head, body = out.split(b"\n\n", 1)
    assert body == b"See you at 7.\r\nAnna\n"
    assert head.split(b"\n") == [b"X-Spam-Flag: YES",
                                 b"X-Spam-Status: Yes, score=8.0 required=5.0 tests=SPAMLEARN_SPAM "
                                 b"autolearn=no",
                                 b"X-Spam-Level: ********", b"X-Spam-Verdict: spam",
                                 b"X-Spam-Probability: 0.9900",
                                 head.split(b"\n")[5], b"From: Anna <anna@example.net>", b"Subject: dinner",
                                 b"MIME-Version: 1.0"]


def test_a_message_of_bare_cr_lines_loses_only_its_verdict_headers(tmp_path):
    """Read as one header line starting "X-Spam-", it was dropped whole: the
    mail went out as our four lines (and empty on the error path)."""
    from spamlearn.classifier import Label, Verdict
    from spamlearn.headers import unmarked_pieces

    raw = b"X-Spam-Flag: NO\rFrom: alice@example.org\rSubject: hello\r\rDear friend.\rRegards\r"
    out = add_verdict_headers(raw, Verdict(0.1, Label.HAM, -2.0))
    assert out.endswith(b"From: alice@example.org\rSubject: hello\r\rDear friend.\rRegards\r")
    assert b"X-Spam-Flag" not in out and out.count(b"X-Spam-Status: No") == 1
    without = b"From: alice@example.org\rSubject: hello\r\rDear friend.\rRegards\r"
    assert b"".join(unmarked_pieces(raw)) == without
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"not a model")
    result = run("--model", broken, "filter", "--exit-zero", input=raw)
    assert result.stdout_bytes == b"".join(unmarked_pieces(raw))
    # Only verdict headers: what followed them stays, byte for byte, and the
    # copy is the same message to the ledger.
    from spamlearn.message import message_digest

    only = b"X-Spam-Flag: NO\r\n\r\nbody\r\n"
    assert b"".join(unmarked_pieces(only)) == b"\r\n\r\nbody\r\n"
    assert message_digest(b"".join(unmarked_pieces(only))) == message_digest(only)


@pytest.mark.parametrize("raw", [
    b"From: spammer@example.com\nSubject: cheap pills\r\r\nX-Spam-Flag: NO\nX-Spam-Verdict: ham\n\nbuy now\n",
    b"From: a@b\r\r\nX-Spam-Flag: NO\r\r\nSubject: hi\r\r\n\r\r\nbody\r\r\n",     # CRLF made twice
])
def test_a_cr_pair_inside_a_header_line_hides_no_forged_header(raw):
    """"\r\r" ends the headers only in a message without any LF: taken so
    anywhere, it hid the X-Spam lines after it from the filter."""
    from spamlearn.classifier import Label, Verdict
    from spamlearn.headers import unmarked_pieces

    for out in (add_verdict_headers(raw, Verdict(0.99, Label.SPAM, 5.0)), b"".join(unmarked_pieces(raw))):
        assert b"X-Spam-Flag: NO" not in out and b"X-Spam-Verdict: ham" not in out
        assert out.endswith(raw[raw.index(b"\n\n"):] if b"\n\n" in raw else raw[raw.index(b"\r\n\r\r\n"):])
        assert (b"Subject: cheap pills\r" in out) if b"pills" in raw else (b"Subject: hi\r\r" in out)


@pytest.mark.parametrize("lines", [
    b"a\n" * 1_000_000,                                    # no blank line: all of it header
    b"Subject: x\n" + b" folded\n" * 250_000,              # one field, folded and folded again
    b" folded first\n" * 250_000,                           # continuation lines before any field
    (b"X-Spam-Flag: NO\nTo: y\n" + b"X-Spam-Level: *\n\t*\n") * 40_000,   # forged verdicts
], ids=["unfolded", "folded", "folded-first", "forged"])
def test_filter_of_a_huge_header_block_costs_memory_in_proportion(lines):
    """The header block was split into a list of its lines, each line an
    object and a tuple: 1.2 GB for a 10 MB message without a blank line
    (Postfix's default size limit), which ``filter`` reads whole."""
    import tracemalloc

    from spamlearn.classifier import Label, Verdict

    head = lines + b"Subject: last\n"
    for raw in (head, head + b"\nbody\n"):
        tracemalloc.start()
        try:
            out = add_verdict_headers(raw, Verdict(0.99, Label.SPAM, 5.0))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * len(raw), peak
        assert out.count(b"X-Spam-") == 6 and b"X-Spam-Flag: YES\nX-Spam-Status: Yes," in out
        assert out.endswith(b"\nSubject: last\n" + raw.partition(b"Subject: last\n")[2])
        assert len(out) == len(raw) - raw.count(b"X-Spam-Flag: NO\n") * len(b"X-Spam-Flag: NO\n") \
            - raw.count(b"X-Spam-Level: *\n\t*\n") * len(b"X-Spam-Level: *\n\t*\n") \
            + sum(len(line) + 1 for line in out.split(b"\n") if line.startswith(b"X-Spam-"))


@pytest.mark.parametrize("raw", [
    b"From: a@b.c\nTo: d@e.f\nSubject: cheap pills\n",          # headers only, no blank line
    b"Subject: " + b"a" * 5000,                                  # ... nor a newline at the end
    b"From: a@b.c\rTo: d@e.f\rSubject: test\r\rbody line\r",      # CR alone ends lines
    b"\tcontinuation first\nSubject: x\n\nbody\n",                # a first line that is folded
    b"From x@y Mon Sep  2 10:00:00 2002\nSubject: s\n\nbody\n",   # an mbox envelope line
    b"Subject: x\r\n\r\nbody\r\n", b"Subject: x\n\nbody",
    b"X-Spam-Flag: NO\n\tfolded\nSubject: a\n\nb\n",             # a forged verdict, folded
])
def test_filter_adds_only_its_headers_so_both_copies_are_one_message(raw):
    from spamlearn.classifier import Label, Verdict
    from spamlearn.message import message_digest

    out = add_verdict_headers(raw, Verdict(0.99, Label.SPAM, 5.0))
    assert message_digest(out) == message_digest(raw)
    ours = [line for line in out.replace(b"\r\n", b"\n").split(b"\n") if line.startswith(b"X-Spam-")]
    assert len(ours) == 6 and b"X-Spam-Flag: YES" in ours
    if not raw.startswith(b"X-Spam-"):
        without = out
        for line in ours:
            without = without.replace(line + (b"\r\n" if b"\r\n" in out else b"\n"), b"", 1)
        assert without == raw


@pytest.mark.parametrize("args, code", [
    (["filter", "--bogus"], ExitCode.FILTER_ERROR),
    (["filter", "--bogus", "--exit-zero"], 0),
    (["--config", "{folder}", "filter"], ExitCode.FILTER_ERROR),
    (["-v", "--model", "{folder}", "filter"], ExitCode.FILTER_ERROR),
])
def test_filter_with_a_command_line_it_cannot_run_passes_the_mail_through(tmp_path, sample_spam, args, code):
    """A usage error's 2 would read as "unsure" to procmail or a sieve filter,
    with an empty message: the mail goes through unchanged, exit 3 instead."""
    args = [a.format(folder=tmp_path) for a in args]
    done = subprocess.run([sys.executable, "-m", "spamlearn", *args], input=sample_spam,
                          capture_output=True, timeout=60)
    assert done.returncode == code, done.stderr
    assert done.stdout == sample_spam
    assert b"message passed through unchanged" in done.stderr


def test_filter_unsure_is_still_2_with_the_headers_once(tmp_path, trained_model):
    config = tmp_path / "c.toml"
    config.write_text(f'[model]\npath = "{trained_model}"\nmin_messages = 1\n'
                      f'spam_cutoff = 0.999999\nham_cutoff = 0.000001\n')
    raw = b"Subject: pills\n\nprice\n"
    done = subprocess.run([sys.executable, "-m", "spamlearn", "--config", str(config), "filter"], input=raw,
                          capture_output=True, timeout=60)
    assert done.returncode == ExitCode.FILTER_UNSURE, done.stderr
    assert done.stdout.count(b"X-Spam-Verdict: unsure") == 1 and done.stdout.endswith(raw)


def test_missing_input_file_exit_code(trained_model, tmp_path):
    result = run("--model", trained_model, "score", tmp_path / "nope.eml")
    assert result.exit_code == ExitCode.NOINPUT
    assert "no such file" in result.output


def test_bad_config_exit_code(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[model]\nham_cutoff = 0.95\nspam_cutoff = 0.5\n")
    result = run("--config", config, "score", "tests/fixtures/sample-ham.eml")
    assert result.exit_code == ExitCode.CONFIG
    assert "cutoffs must satisfy" in result.output


def test_config_file_sets_model_and_cutoffs(tmp_path, trained_model, sample_spam):
    config = tmp_path / "spamlearn.toml"
    config.write_text(f'[model]\npath = "{trained_model}"\nmin_messages = 1\nspam_cutoff = 0.999999\n'
                      f'ham_cutoff = 0.000001\n')
    record = json.loads(run("--config", config, "score", "--json", "-",
                            input=b"Subject: pills\n\nprice").output)
    assert record["verdict"] == "unsure"


def _tiny_corpus(tmp_path, spam_messages, ham_messages):
    """A TREC-layout corpus of the given messages; its index file."""
    data = tmp_path / "data"
    data.mkdir()
    lines = []
    for i, raw in enumerate(spam_messages + ham_messages):
        label = "spam" if i < len(spam_messages) else "ham"
        (data / f"m{i}").write_bytes(raw)
        lines.append(f"{label} ../data/m{i}")
    index = tmp_path / "full" / "index"
    index.parent.mkdir()
    index.write_text("\n".join(lines) + "\n")
    return index


def test_eval_on_a_tiny_corpus(tmp_path, spam_messages, ham_messages):
    index = _tiny_corpus(tmp_path, spam_messages, ham_messages)
    results = tmp_path / "results.txt"
    plot = tmp_path / "roc.png"
    result = run("eval", "--index", index, "--json", "--results", results, "--plot", plot)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    for key in ("roca_pct", "lam_pct", "ham_misclassified_pct", "spam_misclassified_pct", "unsure_pct",
                "messages_per_second"):
        assert key in figures
    rows = results.read_text().splitlines()
    assert len(rows) == 8
    assert rows[0].split()[1] == "spam" and rows[0].split()[3] in ("ham", "unsure", "spam")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_figures_are_the_ones_its_results_file_gives(tmp_path, spam_messages, ham_messages):
    """Anyone, and TREC's tools, must get the published figures from --results."""
    import math

    from sklearn.metrics import roc_auc_score

    index = _tiny_corpus(tmp_path, spam_messages * 3, ham_messages * 3)
    results, trec = tmp_path / "results.txt", tmp_path / "trec.txt"
    figures = json.loads(run("eval", "--index", index, "--json", "--results", results,
                             "--trec-results", trec).output)
    jig = [dict(field.split("=", 1) for field in line.split()) for line in trec.read_text().splitlines()]
    rows = [line.split() for line in results.read_text().splitlines()]
    assert ([(j["file"], j["judge"], float(j["score"])) for j in jig]
            == [(r[0], r[1], float(r[2])) for r in rows])
    assert all(j["class"] == ("spam" if float(j["score"]) > 0.5 else "ham") for j in jig)
    rows = [line.split() for line in results.read_text().splitlines()]
    gold = [row[1] == "spam" for row in rows]
    scores = [float(row[2]) for row in rows]
    assert figures["roca_pct"] == pytest.approx(100 * (1 - roc_auc_score(gold, scores)), abs=1e-6)
    assert figures["roca_pct"] < 20 and len(set(scores)) > 5      # it learned: not all ties
    n_spam, n_ham = sum(gold), len(gold) - sum(gold)
    hm = sum(s > 0.5 and not g for s, g in zip(scores, gold)) / n_ham
    sm = sum(s <= 0.5 and g for s, g in zip(scores, gold)) / n_spam
    hm = min(max(hm, 0.5 / n_ham), 1 - 0.5 / n_ham)         # TREC's nudge by half a message
    sm = min(max(sm, 0.5 / n_spam), 1 - 0.5 / n_spam)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    lam = 100 / (1 + math.exp(-(logit(hm) + logit(sm)) / 2))
    assert figures["lam_pct"] == pytest.approx(lam, abs=1e-6)


def test_eval_reads_an_index_naming_files_that_are_not_utf8(tmp_path, spam_messages, ham_messages):
    """A Latin-1 file name in the index names that file (it read as U+FFFD,
    "No such file", and the message went into the figures as a 0.5)."""
    from urllib.parse import unquote_to_bytes

    index = _tiny_corpus(tmp_path, spam_messages, ham_messages)
    os.rename(tmp_path / "data" / "m0", os.fsencode(tmp_path / "data") + b"/caf\xe9")
    index.write_bytes(index.read_bytes().replace(b"../data/m0\n", b"../data/caf\xe9\n"))
    results = tmp_path / "results.txt"
    result = run("eval", "--index", index, "--json", "--results", results)
    assert result.exit_code == 0, result.output
    first = results.read_text(encoding="utf-8").splitlines()[0].split()
    assert unquote_to_bytes(first[0]) == b"../data/caf\xe9" and first[1] == "spam"


def test_eval_index_problems_have_the_input_exit_codes(tmp_path, spam_messages):
    missing = run("eval", "--index", tmp_path / "nowhere")
    assert missing.exit_code == ExitCode.NOINPUT, missing.output
    assert "cannot read index" in missing.output and "Traceback" not in missing.output
    garbled = tmp_path / "garbled"
    garbled.write_text("garbage line here\n")
    bad = run("eval", "--index", garbled)
    assert bad.exit_code == ExitCode.DATAERR, bad.output
    assert "expected 'spam PATH' or 'ham PATH'" in bad.output
    (tmp_path / "m").write_bytes(spam_messages[0])
    one_class = tmp_path / "one-class"
    one_class.write_text("spam m\n")
    only_spam = run("eval", "--index", one_class)
    assert only_spam.exit_code == ExitCode.DATAERR, only_spam.output
    assert "needs both ham and spam" in only_spam.output


def test_eval_refuses_a_corpus_of_one_class_before_the_run(tmp_path, spam_messages, ham_messages,
                                                          monkeypatch):
    """The index tells; refused only after the run, a whole corpus was
    scored and learned for nothing, and --results was never written."""
    import spamlearn.evaluate as evaluate

    ran = []
    monkeypatch.setattr(evaluate, "run_online", lambda *args, **kwargs: ran.append(1))
    index = _tiny_corpus(tmp_path, spam_messages, ham_messages)      # the spam first
    result = run("eval", "--index", index, "--limit", len(spam_messages))
    assert result.exit_code == ExitCode.DATAERR, result.output
    assert f"the first {len(spam_messages)} messages of {index} are only spam" in result.output
    assert ran == []


def _numbered_message(i: int) -> bytes:
    pitch = b"cheap pills winner prize click" if i % 2 else b"meeting notes for the release review"
    return b"From: a%d@example.com\nSubject: note %d\n\n%s number %d\n" % (i, i, pitch, i)


def test_score_many_files_in_workers_matches_one_process(tmp_path):
    folder = tmp_path / "mail"
    folder.mkdir()
    for i in range(230):      # past the count from which workers score
        (folder / f"{i:03d}.eml").write_bytes(_numbered_message(i))
    box = mailbox.mbox(folder / "zz.mbox")
    for i in range(3):
        box.add(_numbered_message(1000 + i))
    box.flush()
    box.close()
    outputs = {}
    for jobs in ("1", "2"):
        result = run("score", "--json", "--jobs", jobs, folder)
        assert result.exit_code == 0, result.output
        outputs[jobs] = [json.loads(line) for line in result.output.splitlines()]
    assert outputs["1"] == outputs["2"]
    names = [row["path"] for row in outputs["2"]]
    assert len(names) == 233 and len(set(names)) == 233
    assert names[-3:] == [f"{folder / 'zz.mbox'}#{n}" for n in (1, 2, 3)], "an mbox is split, in order"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_score_in_workers_says_each_message_that_fails_in_its_place(tmp_path, jobs):
    """The workers score files a group at a time, stage by stage: an empty
    file and a FIFO among them get their own lines, where they are listed,
    and the messages around them their scores."""
    folder = tmp_path / "mail"
    folder.mkdir()
    for i in range(230):
        (folder / f"{i:03d}.eml").write_bytes(_numbered_message(i))
    (folder / "017.eml").write_bytes(b"")
    (folder / "033.eml").unlink()
    os.mkfifo(folder / "033.eml")
    result = run("score", "--json", "--jobs", jobs, folder)
    assert result.exit_code == ExitCode.NOINPUT, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["path"] for row in rows] == [str(folder / f"{i:03d}.eml") for i in range(230)]
    assert rows[17] == {"path": str(folder / "017.eml"), "error": "empty message"}
    assert rows[33] == {"path": str(folder / "033.eml"), "error": "not a regular file"}
    assert all(row["verdict"] in ("ham", "unsure", "spam") for i, row in enumerate(rows) if i not in (17, 33))


def test_a_worker_holds_one_batch_of_bytes_not_sixteen_big_files(tmp_path, monkeypatch):
    """Files are scored sixteen at a time, stage by stage: sixteen 50 MB
    messages would all have been read before the first was scored.  A
    batch ends once its bytes reach _BATCH_BYTES, and the next file is
    read only then."""
    import spamlearn.cli_core as cli_core
    from spamlearn import Classifier

    monkeypatch.setattr(cli_core, "_BATCH_BYTES", 3000)
    classifier = Classifier(n_features=2**12)
    classifier.learn(_numbered_message(1), "spam")
    classifier.learn(_numbered_message(2), "ham")
    batches, read = [], []
    real_score_many, real_read_file = classifier.score_many, cli_core.read_file

    def score_many(raws):
        batches.append((len(raws), sum(map(len, raws)), len(read)))
        return real_score_many(raws)

    def read_file(name):
        read.append(name)
        return real_read_file(name)

    monkeypatch.setattr(classifier, "score_many", score_many)
    monkeypatch.setattr(cli_core, "read_file", read_file)
    monkeypatch.setattr(cli_core, "_WORKER_CLASSIFIER", classifier)
    jobs = []
    for i in range(16):
        path = tmp_path / f"{i:02d}.eml"
        body = b"word " * (400 if i % 4 == 0 else 20)       # every fourth 2 kB, the rest 100 bytes
        path.write_bytes(_numbered_message(i) + body)
        jobs.append((str(path), None, None, False))
    results = cli_core._score_files(jobs)
    assert [r[0]["path"] for r in results] == [job[0] for job in jobs]
    assert all(r[0]["verdict"] in ("ham", "unsure", "spam") for r in results)
    assert sum(n for n, _, _ in batches) == 16 and len(batches) > 1
    for _, size, _ in batches[:-1]:
        assert size >= 3000 and size - 2100 < 3000, batches     # ended by the file that crossed it
    assert [files_read for _, _, files_read in batches] == sorted({f for _, _, f in batches}), \
        "each batch scored before the next file was read"


def _echo(value):
    return value


def test_the_scoring_pool_does_not_spin_while_results_wait(monkeypatch):
    """The stock Pool's worker-handler thread also waited on the results'
    pipe and went round its loop each time results lay there unread: 8,495
    times in one ``score --jobs 2`` of the corpus, CPU and GIL taken from
    the threads that read and print.  Counted here through the loop's
    ``_maintain_pool`` (hundreds of rounds for this stock pool)."""
    import multiprocessing.pool

    from spamlearn.cli_core import _scoring_pool

    if not hasattr(multiprocessing.pool.Pool, "_maintain_pool"):
        pytest.skip("this Python's Pool has no _maintain_pool to count")
    rounds = []
    maintain = multiprocessing.pool.Pool._maintain_pool
    monkeypatch.setattr(multiprocessing.pool.Pool, "_maintain_pool",
                        staticmethod(lambda *args: rounds.append(1) or maintain(*args)))
    with _scoring_pool(2) as pool:
        out = []
        for value in pool.imap(_echo, range(2000), chunksize=4):
            sum(range(2000))        # the reader is busy, as printing keeps it
            out.append(value)
    assert out == list(range(2000))
    assert len(rounds) < 20, f"{len(rounds)} rounds of the worker handler"


def test_score_one_large_mbox_is_split_into_its_messages(tmp_path):
    box = mailbox.mbox(tmp_path / "big.mbox")
    for i in range(250):
        box.add(_numbered_message(i))
    box.flush()
    box.close()
    result = run("score", "--json", "--jobs", "2", tmp_path / "big.mbox")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [row["path"] for row in rows] == [f"{tmp_path / 'big.mbox'}#{n}" for n in range(1, 251)]
    assert {row["verdict"] for row in rows} <= {"ham", "unsure", "spam"}


def test_learn_for_a_user_without_an_own_model_says_it_uses_the_shared_one(tmp_path, sample_spam):
    config = tmp_path / "spamlearn.toml"
    config.write_text(f'[model]\npath = "{tmp_path / "shared.joblib"}"\n'
                      f'[users]\ndir = "{tmp_path / "users"}"\nown_model = ["alice"]\n')
    message = tmp_path / "spam.eml"
    message.write_bytes(sample_spam)
    alice = run("--config", config, "learn", "--spam", "--user", "alice", message)
    assert alice.exit_code == 0, alice.output
    assert (tmp_path / "users" / "alice.joblib").exists()
    assert "no own model" not in alice.output
    assert not (tmp_path / "shared.joblib").exists()
    bob = run("--config", config, "learn", "--spam", "--user", "bob", message)
    assert bob.exit_code == 0, bob.output
    assert "bob has no own model" in bob.output and str(tmp_path / "shared.joblib") in bob.output
    assert (tmp_path / "shared.joblib").exists()


def test_score_json_path_of_a_non_utf8_file_name_is_valid_json(tmp_path, sample_ham):
    """A Latin-1 file name would reach JSON as a lone surrogate (\\udce9),
    which strict parsers refuse; it is written as a \\xNN escape instead."""
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.eml")).write_bytes(sample_ham)
    (folder / "naïve.eml").write_bytes(sample_ham)
    result = run("score", "--json", folder)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all("\\ud" not in line for line in lines)
    paths = sorted(json.loads(line)["path"] for line in lines)
    assert paths == sorted([f"{folder}/caf\\xe9.eml", f"{folder}/naïve.eml"])


def test_a_folder_at_the_configured_model_path_is_an_error_not_the_default_model(tmp_path, sample_spam):
    folder = tmp_path / "model.joblib"
    folder.mkdir()
    result = runner.invoke(app, ["score", "tests/fixtures/sample-spam.eml"],
                           env={"SPAMLEARN_MODEL": str(folder)})
    assert result.exit_code == ExitCode.IOERR
    assert "is a folder, not a model file" in result.output


def test_a_model_path_that_is_a_loop_of_links_is_refused_not_replaced(tmp_path):
    """The loop looked like no model at all: learn wrote a new model in place
    of the link, and score called it "truncated or corrupt (OSError)"."""
    model = tmp_path / "model.joblib"
    model.symlink_to(tmp_path / "other.joblib")
    (tmp_path / "other.joblib").symlink_to(model)
    learned = run("--model", model, "learn", "--spam", "tests/fixtures/sample-spam.eml")
    assert learned.exit_code == ExitCode.IOERR, learned.output
    assert "is a loop of symbolic links, not a model file" in learned.output
    assert model.is_symlink()
    scored = run("--model", model, "score", "tests/fixtures/sample-spam.eml")
    assert scored.exit_code == ExitCode.IOERR
    assert f"no model file at {model} (Too many levels of symbolic links)" in scored.output
    (tmp_path / "file").write_text("")
    scored = run("--model", tmp_path / "file" / "model.joblib", "score", "tests/fixtures/sample-spam.eml")
    assert "(Not a directory)" in scored.output and "corrupt" not in scored.output


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_info_on_a_corrupt_model_still_shows_its_files_and_the_ledgers_counts(trained_model, check):
    """It printed the error alone, where which model and what its ledger
    holds are what the admin needs next (status goes on past a broken account)."""
    trained_model.write_bytes(b"\x80 not a model")
    result = run("--model", trained_model, "info", *check)
    assert result.exit_code == ExitCode.IOERR, result.output
    assert f"model file:     {trained_model}\n" in result.stdout
    assert "ledger holds:   5 spam, 5 ham (the model file does not read)" in result.stdout
    assert re.search(r"^  cli +spam +5 ", result.stdout, re.M)
    assert result.stderr == (f"spamlearn: error: model file {trained_model} is truncated or corrupt "
                             f"(ValueError)\n")
    as_json = run("--model", trained_model, "info", "--json")
    assert as_json.exit_code == ExitCode.IOERR
    shown = json.loads(as_json.stdout)
    assert shown["ledger_counts"] == {"spam": 5, "ham": 5} and "truncated or corrupt" in shown["model_error"]


def test_info_on_a_corrupt_ledger_still_shows_the_models_counts(trained_model):
    trained_model.with_name(trained_model.stem + ".ledger").write_bytes(b"not a database " * 100)
    result = run("--model", trained_model, "info")
    assert result.exit_code == ExitCode.IOERR, result.output
    assert "learned:        5 spam, 5 ham" in result.stdout
    assert result.stderr.startswith("spamlearn: error: cannot open ledger ")


def test_info_check_reports_a_ledger_whose_model_is_missing(trained_model):
    trained_model.unlink()
    result = run("--model", trained_model, "info", "--check")
    assert result.exit_code == ExitCode.IOERR
    assert "does not belong" in result.output
    # What the ledger holds is shown too: it printed the error alone.
    assert re.search(r"^  cli +spam +5 ", result.stdout, re.M)
    assert re.search(r"^check: +ledger .* does not belong", result.stdout, re.M)


def test_info_shows_a_model_whose_ledger_is_missing(trained_model):
    """Learners refuse such a model (74); plain info said nothing of it, and
    info --check printed the error alone, without the model's counts."""
    trained_model.with_name(trained_model.stem + ".ledger").unlink()
    shown = run("--model", trained_model, "info")
    assert shown.exit_code == 0, shown.output
    assert "(missing: learning refuses the model" in shown.stdout
    checked = run("--model", trained_model, "info", "--check")
    assert checked.exit_code == ExitCode.IOERR, checked.output
    assert "learned:        5 spam, 5 ham" in checked.stdout
    assert re.search(r"^check: +model .* has no ledger", checked.stdout, re.M)
    assert checked.stderr.startswith("spamlearn: error: model ") and "has no ledger" in checked.stderr


def test_learn_says_when_it_starts_a_new_model(tmp_path):
    model = tmp_path / "typo" / "m.joblib"
    first = run("--model", model, "learn", "--spam", "tests/fixtures/sample-spam.eml")
    again = run("--model", model, "learn", "--ham", "tests/fixtures/sample-ham.eml")
    assert first.exit_code == again.exit_code == 0
    assert f"(new model {model})" in first.output and f"(model {model})" in again.output


def test_a_learner_that_waited_for_the_first_does_not_say_new_model(tmp_path, sample_spam):
    """Learners started together on a fresh path: only the one that made
    the model says so."""
    import threading

    from spamlearn.modelstore import ModelStore

    model = tmp_path / "m.joblib"
    holding, release = threading.Event(), threading.Event()

    def first_learner():
        with ModelStore(model).session() as session:
            session.learn(sample_spam, "spam")
            holding.set()
            release.wait(10)

    first = threading.Thread(target=first_learner)
    first.start()
    assert holding.wait(10)
    threading.Timer(0.5, release.set).start()       # the CLI learner is waiting for the lock by then
    second = run("--model", model, "learn", "--ham", "tests/fixtures/sample-ham.eml")
    first.join()
    assert second.exit_code == 0, second.output
    assert f"(model {model})" in second.output


def test_score_writes_one_line_per_message_whatever_the_file_name(tmp_path, sample_ham):
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "a\nb.eml").write_bytes(sample_ham)
    (folder / os.fsdecode(b"caf\xe9.eml")).write_bytes(sample_ham)
    result = run("score", folder)
    assert result.exit_code == 0, result.output
    names = sorted(line.split("\t")[0] for line in result.stdout.splitlines())
    assert names == [f"{folder}/a\\nb.eml", f"{folder}/caf\\xe9.eml"]


def test_learn_and_forget_name_odd_file_names_on_one_line(tmp_path, sample_ham):
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "a\nb.eml").write_bytes(sample_ham)
    (folder / "empty\n.eml").write_bytes(b"\n")
    model = tmp_path / "m.joblib"
    learned = run("--model", model, "-v", "learn", "--ham", folder)
    assert learned.exit_code == ExitCode.DATAERR
    assert f"{folder}/a\\nb.eml: learned as ham" in learned.stdout
    assert f"spamlearn: {folder}/empty\\n.eml: empty message" in learned.stderr
    forgot = run("--model", model, "forget", folder)
    assert f"spamlearn: {folder}/empty\\n.eml: empty message" in forgot.stderr


def test_learn_warns_about_files_that_are_not_mail(tmp_path, sample_ham):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "mail.eml").write_bytes(sample_ham)
    (folder / "mbox").write_bytes(b"From someone Tue Aug 27 10:33:40 2002\n" + sample_ham)
    (folder / "photo.jpg").write_bytes(bytes(range(256)) * 8)
    model = tmp_path / "m.joblib"
    result = run("--model", model, "learn", "--ham", folder)
    assert result.exit_code == 0, result.output
    assert "learned 2 as ham" in result.stdout     # the mbox holds the same message as mail.eml
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [f"spamlearn: warning: {folder}/photo.jpg: no mail header fields "
                        "(not a mail message?); learned as text"]
    again = run("--model", model, "learn", "--ham", folder)   # known now: nothing to warn about
    assert "warning" not in again.stderr


def test_forget_of_an_empty_message_is_a_data_error_as_for_learn(trained_model, tmp_path, sample_ham):
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"\n")
    message = tmp_path / "ham.eml"
    message.write_bytes(sample_ham)
    result = run("--model", trained_model, "forget", empty, message)
    assert result.exit_code == ExitCode.DATAERR
    assert "empty message" in result.output and "forgot 1, not known 0, errors 1" in result.output


def test_forget_from_a_path_with_no_model_says_so_and_makes_nothing(trained_model, tmp_path, sample_spam):
    """A mistyped --model said only "forgot 0, not known 1", as if the message
    had never been learned (the real model kept it), and left a folder, a
    lock file and an empty ledger at the typo."""
    message = tmp_path / "spam.eml"
    message.write_bytes(sample_spam)
    typo = tmp_path / "typo" / "model.joblib"
    result = run("--model", typo, "forget", message, tmp_path / "missing.eml")
    assert result.exit_code == ExitCode.NOINPUT, result.output
    assert f"forgot 0, not known 1, errors 1 (no model at {typo})" in result.stdout
    assert not typo.parent.exists()
    real = run("--model", trained_model, "forget", message)
    assert f"forgot 1, not known 0, errors 0 (model {trained_model})" in real.stdout


def _many_words(count: int, seed: int) -> bytes:
    words = " ".join(f"w{seed}x{i}" for i in range(count))
    return (f"From: a@example.org\nSubject: words {seed}\n\n{words}\n").encode()


def test_a_new_model_takes_its_size_from_the_config_and_keeps_it(tmp_path, sample_spam, sample_ham):
    config = tmp_path / "spamlearn.toml"
    model = tmp_path / "model.joblib"
    config.write_text(f'[model]\npath = "{model}"\nfeatures = 65536\n')
    (tmp_path / "s.eml").write_bytes(sample_spam)
    assert run("--config", config, "learn", "--spam", tmp_path / "s.eml").exit_code == 0
    shown = json.loads(run("--config", config, "info", "--json").output)
    assert shown["n_features"] == 65536
    # A model keeps the size it was made with: a changed setting applies to new models only.
    config.write_text(f'[model]\npath = "{model}"\nfeatures = 131072\n')
    (tmp_path / "h.eml").write_bytes(sample_ham)
    assert run("--config", config, "learn", "--ham", tmp_path / "h.eml").exit_code == 0
    shown = json.loads(run("--config", config, "info", "--json").output)
    assert (shown["n_features"], shown["n_spam"], shown["n_ham"]) == (65536, 1, 1)
    config.write_text(f'[model]\npath = "{model}"\nfeatures = 1000\n')
    refused = run("--config", config, "info")
    assert refused.exit_code == ExitCode.CONFIG and "features must be between 65536" in refused.output
    config.write_text(f'[model]\npath = "{model}"\nfeatures = 3000000\n')
    refused = run("--config", config, "info")
    assert refused.exit_code == ExitCode.CONFIG and "features must be a power of two" in refused.output


def test_info_warns_when_the_buckets_fill_up(tmp_path):
    config = tmp_path / "spamlearn.toml"
    config.write_text(f'[model]\npath = "{tmp_path / "model.joblib"}"\nfeatures = 65536\n')
    (tmp_path / "a.eml").write_bytes(_many_words(8000, 1))
    assert run("--config", config, "learn", "--spam", tmp_path / "a.eml").exit_code == 0
    roomy = run("--config", config, "info")
    assert roomy.exit_code == 0 and "warning" not in roomy.output
    used = json.loads(run("--config", config, "info", "--json").output)["buckets_used_pct"]
    assert 5 < used < 25                                     # about 8,000 of 65,536
    assert f"feature buckets used ({used:.1f}%)" in roomy.output
    (tmp_path / "b.eml").write_bytes(_many_words(16000, 2))
    assert run("--config", config, "learn", "--ham", tmp_path / "b.eml").exit_code == 0
    crowded = run("--config", config, "info")
    assert crowded.exit_code == 0
    assert "over 25% of the buckets are in use" in crowded.output
    assert "spamlearn resize --features 131072" in crowded.output
    assert json.loads(run("--config", config, "info", "--json").output)["buckets_used_pct"] > 25


def test_eval_uses_the_configured_model_size(tmp_path, spam_messages, ham_messages, monkeypatch):
    import spamlearn.evaluate as evaluate

    index = _tiny_corpus(tmp_path, spam_messages, ham_messages)
    config = tmp_path / "spamlearn.toml"
    config.write_text("[model]\nfeatures = 65536\n")
    sizes = []
    real = evaluate.run_online

    def watched(entries, classifier, **kwargs):
        sizes.append(classifier.model.n_features_in_)
        return real(entries, classifier, **kwargs)

    monkeypatch.setattr(evaluate, "run_online", watched)
    result = run("--config", config, "eval", "--index", index, "--json")
    assert result.exit_code == 0, result.output
    assert sizes == [65536]


def test_eval_sizes_the_model_for_the_corpus_unless_told(tmp_path, spam_messages, ham_messages):
    from spamlearn.evaluate import features_for

    # An online run has nobody to act on "buckets filling up": a corpus
    # large enough to crowd the configured size gets more, 64 a message.
    assert features_for(6046, 2**21, 2**25) == 2**21
    assert features_for(75_000, 2**21, 2**25) == 2**23
    assert features_for(10**7, 2**21, 2**25) == 2**25
    assert features_for(75_000, 2**24, 2**25) == 2**24
    index = _tiny_corpus(tmp_path, spam_messages, ham_messages)
    shown = json.loads(run("eval", "--index", index, "--json").output)
    assert shown["n_features"] == 2**21
    result = run("eval", "--index", index, "--json", "--features", 2**16)
    assert result.exit_code == 0 and json.loads(result.output)["n_features"] == 2**16
    wrong = run("eval", "--index", index, "--features", 100_000)
    assert wrong.exit_code == ExitCode.CONFIG and "power of two" in wrong.output


def test_a_crowded_model_of_the_largest_size_is_not_told_to_grow(tmp_path, monkeypatch):
    monkeypatch.setattr("spamlearn.cli_core.MAX_FEATURES", 65536)     # 2**25 would take 256 MB here
    config = tmp_path / "spamlearn.toml"
    config.write_text(f'[model]\npath = "{tmp_path / "model.joblib"}"\nfeatures = 65536\n')
    (tmp_path / "a.eml").write_bytes(_many_words(40000, 3))
    assert run("--config", config, "learn", "--spam", tmp_path / "a.eml").exit_code == 0
    crowded = run("--config", config, "info")
    assert "over 25% of the buckets are in use" in crowded.output
    assert "it is the largest size spamlearn makes" in crowded.output and "resize" not in crowded.output

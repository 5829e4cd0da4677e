"""Bad input through the real command: a score or one clear line, never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import joblib
import pytest

from spamlearn.cli import ExitCode
from spamlearn.message import parse_message
from spamlearn.tokenizer import Tokenizer


def spamlearn(*args, input: bytes = b"", env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "spamlearn", *map(str, args)], input=input,
                          capture_output=True, env=env, timeout=120)


def nested(depth: int) -> bytes:
    head = b"From: a@example.org\nSubject: deep\nMIME-Version: 1.0\n"
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i)
                       for i in range(depth))
    closing = b"".join(b"\n--b%d--\n" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\n\nhello from the bottom\n" + closing


TRUNCATED_MULTIPART = (b"From: a@example.org\nSubject: cut\nMIME-Version: 1.0\n"
                       b'Content-Type: multipart/alternative; boundary="XX"\n\n--XX\n'
                       b"Content-Type: text/plain\n\nfirst part\n--XX\nContent-Type: text/html\n"
                       b"Content-Transfer-Encoding: base64\n\nPGh0bWw+PGJvZHk+aGVsbG8gd29y")
UNKNOWN_CHARSET = (b"From: a@example.org\nSubject: =?x-klingon?Q?Qapla=27?=\nMIME-Version: 1.0\n"
                   b"Content-Type: text/plain; charset=x-klingon\n\nnuqneH \xe4\xf6\xfc\n")
WRONG_CHARSET = (b"From: a@example.org\nSubject: caf\xe9\nMIME-Version: 1.0\n"
                 b"Content-Type: text/plain; charset=utf-8\n\n"
                 b"Caf\xe9 cr\xe8me br\xfbl\xe9e, \xe0 bient\xf4t\n")

SCORABLE = {
    "lone header line": b"Subject: hello",
    "random binary": random.Random(2002).randbytes(20_000),
    "truncated multipart": TRUNCATED_MULTIPART,
    "nested 1,000 deep": nested(1000),
    "unknown charset": UNKNOWN_CHARSET,
    "wrong charset": WRONG_CHARSET,
}


def assert_clean_stderr(result):
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) <= 1, stderr


@pytest.mark.parametrize("name", list(SCORABLE))
def test_odd_messages_still_get_a_score(name):
    result = spamlearn("score", "--json", "-", input=SCORABLE[name])
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["verdict"] in ("ham", "unsure", "spam") and 0.0 <= record["score"] <= 1.0
    assert_clean_stderr(result)


@pytest.mark.parametrize("name", list(SCORABLE))
def test_odd_messages_can_be_learned_and_forgotten(name, tmp_path):
    model = tmp_path / "m.joblib"
    learned = spamlearn("--model", model, "learn", "--spam", "-", input=SCORABLE[name])
    assert learned.returncode == 0, learned.stderr
    assert "learned 1 as spam" in learned.stdout.decode()
    forgotten = spamlearn("--model", model, "forget", "-", input=SCORABLE[name])
    assert "forgot 1" in forgotten.stdout.decode()


@pytest.mark.parametrize("command", [("score", "-"), ("learn", "--spam", "-")])
@pytest.mark.parametrize("stdin", [b"", b"From e@x Mon Jan  1 00:00:00 2024\n"])
def test_empty_input_is_a_clear_error(tmp_path, command, stdin):
    """An envelope line alone too: `learn FILE` refused it, `learn -` learned it."""
    model = ("--model", tmp_path / "m.joblib") if command[0] == "learn" else ()   # score: the default
    result = spamlearn(*model, *command, input=stdin)
    assert result.returncode == ExitCode.DATAERR
    assert "empty message" in result.stderr.decode()
    assert_clean_stderr(result)
    assert not (tmp_path / "m.joblib").exists()


def test_fifty_megabyte_message_costs_no_more_than_the_scan_limit():
    head = b"From: a@example.org\nSubject: big attachment\nContent-Type: text/plain\n\n"
    body = (b"lorem ipsum dolor sit amet " * 40 + b"\n") * 48_000
    huge = head + body
    assert len(huge) > 50_000_000
    scan_limit = 512_000
    tokenizer = Tokenizer()
    whole = set(tokenizer.tokenize(parse_message(huge, scan_limit)))
    prefix = set(tokenizer.tokenize(parse_message(huge[:scan_limit], scan_limit)))
    assert whole - {"control:truncated"} == prefix, "only the first scan_limit bytes count"
    start = time.perf_counter()
    result = spamlearn("score", "--json", "-", input=huge)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] in ("ham", "unsure", "spam")
    assert elapsed < 30, f"a 50 MB message took {elapsed:.1f} s"


def test_truncated_model_file(tmp_path):
    model = tmp_path / "m.joblib"
    spamlearn("--model", model, "learn", "--spam", "tests/fixtures/sample-spam.eml")
    model.write_bytes(model.read_bytes()[:200])
    result = spamlearn("--model", model, "score", "tests/fixtures/sample-spam.eml")
    assert result.returncode == ExitCode.IOERR
    assert "truncated or corrupt" in result.stderr.decode()
    assert_clean_stderr(result)


def test_model_file_of_another_format_version(tmp_path):
    model = tmp_path / "m.joblib"
    spamlearn("--model", model, "learn", "--spam", "tests/fixtures/sample-spam.eml")
    data = joblib.load(model)
    data["format_version"] = 99
    joblib.dump(data, model)
    for args in (("score", "tests/fixtures/sample-spam.eml"),
                 ("learn", "--ham", "tests/fixtures/sample-ham.eml")):
        result = spamlearn("--model", model, *args)
        assert result.returncode == ExitCode.IOERR
        assert "format version 99" in result.stderr.decode()
        assert_clean_stderr(result)


def test_read_only_model_folder(read_only_folder):
    model = read_only_folder.path / "m.joblib"
    assert spamlearn("--model", model, "learn", "--spam", "tests/fixtures/sample-spam.eml").returncode == 0
    assert spamlearn("--model", model, "learn", "--ham", "tests/fixtures/sample-ham.eml").returncode == 0
    read_only_folder.freeze()
    result = spamlearn("--model", model, "learn", "--spam", "tests/fixtures/sample-ham.eml")
    assert result.returncode == ExitCode.IOERR
    assert "not writable" in result.stderr.decode() or "Read-only" in result.stderr.decode()
    assert_clean_stderr(result)
    scored = spamlearn("--model", model, "score", "--json", "tests/fixtures/sample-spam.eml")
    assert scored.returncode == 0 and json.loads(scored.stdout)["verdict"] == "spam"


@contextlib.contextmanager
def holding_a_lock(code: str, path: Path):
    """Another process running ``code`` (with ``path`` as argv[1]) until it
    has printed "locked"; killed on the way out."""
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        yield
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_busy_model_exits_with_tempfail(tmp_path):
    model = tmp_path / "m.joblib"
    with holding_a_lock("import sys, time; from pathlib import Path; from spamlearn.modelstore import "
                        "ModelStore\nwith ModelStore(Path(sys.argv[1])).session():\n"
                        "    print('locked', flush=True); time.sleep(30)", model):
        result = spamlearn("--model", model, "learn", "--spam", "tests/fixtures/sample-spam.eml",
                           env_extra={"SPAMLEARN_LOCK_TIMEOUT": "0.3"})
    assert result.returncode == ExitCode.TEMPFAIL, result.stderr
    assert "another learner has held" in result.stderr.decode()
    assert_clean_stderr(result)


def test_a_ledger_locked_by_another_program_is_tempfail_within_the_lock_timeout(tmp_path):
    """An admin's sqlite3 shell holding a write transaction on the ledger:
    "try again later" (75) after SPAMLEARN_LOCK_TIMEOUT, not a corrupt
    ledger (74) after a fixed 30 s; the learn is not half done."""
    model = tmp_path / "m.joblib"
    assert spamlearn("--model", model, "learn", "--ham", "tests/fixtures/sample-ham.eml").returncode == 0
    with holding_a_lock("import sqlite3, sys, time\n"
                        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                        "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)",
                        tmp_path / "m.ledger"):
        started = time.monotonic()
        result = spamlearn("--model", model, "learn", "--spam", "tests/fixtures/sample-spam.eml",
                           env_extra={"SPAMLEARN_LOCK_TIMEOUT": "0.5"})
        assert time.monotonic() - started < 15
    assert result.returncode == ExitCode.TEMPFAIL, result.stderr
    assert "locked by another program" in result.stderr.decode()
    assert_clean_stderr(result)
    info = spamlearn("--model", model, "info", "--check", "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["n_spam"] == 0


# -- what is not a regular file, and folders that cannot be read ----------


@pytest.mark.timeout(60)
def test_fifos_and_devices_are_reported_never_read(tmp_path):
    """A FIFO would block the run for ever and /dev/zero fill the memory:
    both are named as not regular files, and the other messages scored."""
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "a.eml").write_bytes(Path("tests/fixtures/sample-spam.eml").read_bytes())
    os.mkfifo(folder / "fifo")
    os.mkfifo(tmp_path / "top-fifo")
    result = spamlearn("score", folder, tmp_path / "top-fifo", "/dev/zero")
    assert result.returncode == ExitCode.NOINPUT
    assert b"a.eml\tspam" in result.stdout
    stderr = result.stderr.decode()
    assert stderr.count("not a regular file") == 3 and "Traceback" not in stderr
    model = tmp_path / "m.joblib"
    learned = spamlearn("--model", model, "learn", "--spam", folder)
    assert learned.returncode == ExitCode.NOINPUT and b"learned 1 as spam" in learned.stdout
    as_model = spamlearn("--model", tmp_path / "top-fifo", "score", "tests/fixtures/sample-ham.eml")
    assert as_model.returncode == ExitCode.IOERR and b"is a FIFO, not a model file" in as_model.stderr
    index = tmp_path / "index"
    index.write_text(f"spam {folder / 'fifo'}\nham /dev/zero\nspam {folder / 'a.eml'}\n"
                     "ham tests/fixtures/sample-ham.eml\n".replace("tests/", os.getcwd() + "/tests/"))
    evaluated = spamlearn("eval", "--index", index)
    assert evaluated.returncode == ExitCode.NOINPUT
    assert b"2 of 4 messages could not be read" in evaluated.stderr
    named = evaluated.stderr.decode()
    assert f"{folder / 'fifo'}: " in named and "/dev/zero: " in named, "each one is named"
    # The report names its clues from a sample of the messages: read as
    # the run reads them (it read the FIFO, and hung for ever).
    reported = spamlearn("eval", "--index", index, "--report", tmp_path / "report")
    assert reported.returncode == ExitCode.NOINPUT, reported.stderr
    assert (tmp_path / "report" / "index.html").is_file()


def test_eval_tells_messages_it_cannot_parse_from_files_it_cannot_read(tmp_path):
    """As ``score`` does: 65 when every file was read but some are not
    messages, 66 when a file could not be read at all."""
    fixtures = Path("tests/fixtures").resolve()
    (tmp_path / "empty.eml").write_bytes(b"")
    index = tmp_path / "index"
    lines = (f"spam {fixtures / 'sample-spam.eml'}\nham {fixtures / 'sample-ham.eml'}\n"
             f"ham {tmp_path / 'empty.eml'}\n")
    index.write_text(lines)
    not_a_message = spamlearn("eval", "--index", index)
    assert not_a_message.returncode == ExitCode.DATAERR, not_a_message.stderr
    assert b"1 of 3 messages could not be read or parsed" in not_a_message.stderr
    index.write_text(lines + f"spam {tmp_path / 'gone.eml'}\n")
    missing = spamlearn("eval", "--index", index)
    assert missing.returncode == ExitCode.NOINPUT, missing.stderr
    assert b"2 of 4 messages could not be read or parsed" in missing.stderr


@pytest.mark.timeout(60)
def test_symlinked_folders_inside_a_tree_are_not_followed(tmp_path):
    """``up -> ..`` inside a folder would walk everything above it, or loop."""
    folder = tmp_path / "mail"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.eml").write_bytes(Path("tests/fixtures/sample-ham.eml").read_bytes())
    (folder / "sub" / "up").symlink_to("..")
    (folder / "sub" / "b.eml").symlink_to("a.eml")      # a link to a file is read
    result = spamlearn("score", folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [f"{folder}/sub/a.eml\tham\t0.0000",
                                                   f"{folder}/sub/b.eml\tham\t0.0000"]
    linked = tmp_path / "linked"
    linked.symlink_to(folder)          # named on the command line: followed
    assert spamlearn("score", linked).stdout.count(b"\tham\t") == 2
    (folder / "self").symlink_to("self")
    looped = spamlearn("score", folder)
    assert looped.returncode == ExitCode.NOINPUT and looped.stdout.count(b"\tham\t") == 2
    assert b"self: broken symbolic link" in looped.stderr


def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_read(tmp_path, monkeypatch):
    """Root reads every folder, so the listing is made to fail."""
    from spamlearn import mailsource

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / "a.eml").write_bytes(b"Subject: hi\n\nhello\n")
    real_scandir = os.scandir

    def scandir(path):
        if str(path) == str(bad):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(mailsource.os, "scandir", scandir)
    found = list(mailsource.iter_messages([bad, good]))
    assert ([(m.name, m.error) for m in found if m.error]
            == [(str(bad), "cannot list folder: Permission denied")])
    assert [m.name for m in found if m.raw] == [str(good / "a.eml")]


def test_a_maildir_whose_cur_cannot_be_listed_still_gives_its_new_messages(tmp_path, monkeypatch):
    """An unreadable cur/ reported the whole Maildir and skipped the
    readable new/ with it (a helper's review)."""
    from spamlearn import mailsource

    box = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "cur" / "1:2,S").write_bytes(b"Subject: seen\n\nhello\n")
    (box / "new" / "2").write_bytes(b"Subject: new\n\nhello again\n")
    real_scandir = os.scandir

    def scandir(path):
        if str(path) == str(box / "cur"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(mailsource.os, "scandir", scandir)
    found = list(mailsource.iter_messages([box]))
    assert [(m.name, m.error) for m in found if m.error] == [
        (str(box / "cur"), "cannot list folder: Permission denied")]
    assert [m.name for m in found if m.raw] == [str(box / "new" / "2")]


def test_model_file_without_its_counts(tmp_path):
    model = tmp_path / "m.joblib"
    spamlearn("--model", model, "learn", "--spam", "tests/fixtures/sample-spam.eml")
    data = joblib.load(model)
    del data["n_spam"], data["spam"]
    joblib.dump(data, model)
    for args in (("info",), ("score", "tests/fixtures/sample-spam.eml")):
        result = spamlearn("--model", model, *args)
        assert result.returncode == ExitCode.IOERR, result.stderr
        assert "corrupt (no spam, n_spam)" in result.stderr.decode()
        assert_clean_stderr(result)


def test_eval_refuses_unwritable_outputs_before_the_run(tmp_path):
    index = tmp_path / "index"
    index.write_text(f"spam {os.getcwd()}/tests/fixtures/sample-spam.eml\n")
    (tmp_path / "file").write_text("x")
    for option, value, expected in (("--results", tmp_path / "no" / "r.txt", "no folder"),
                                    ("--plot", tmp_path, "is a folder"),
                                    ("--report", tmp_path / "file", "not a folder")):
        result = spamlearn("eval", "--index", index, option, value)
        assert result.returncode == ExitCode.USAGE
        assert expected in result.stderr.decode()
        assert_clean_stderr(result)


def test_eval_never_puts_a_picture_in_place_of_a_fifo_device_or_socket(tmp_path):
    """--plot is written beside and renamed over its path: run as root,
    ``eval --plot /dev/full`` replaced the device with a PNG (/dev/null the
    same).  A FIFO stands in for the device here.  --results is written in
    place (/dev/null, a FIFO with its reader), but no file opens a socket:
    both refused before the run."""
    index = tmp_path / "index"
    index.write_text(f"spam {os.getcwd()}/tests/fixtures/sample-spam.eml\n"
                     f"ham {os.getcwd()}/tests/fixtures/sample-ham.eml\n")
    fifo, sock, loop = tmp_path / "fifo", tmp_path / "sock", tmp_path / "loop"
    os.mkfifo(fifo)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock))
    loop.symlink_to(loop)
    for option, value, expected in (("--plot", fifo, "is a FIFO"),
                                    ("--plot", tmp_path / "to-fifo", "is a FIFO"),
                                    ("--results", sock, "is a socket"),
                                    ("--plot", loop, "Too many levels of symbolic links")):
        if value.name == "to-fifo":
            value.symlink_to(fifo)
        result = spamlearn("eval", "--index", index, option, value)
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert expected in result.stderr.decode() and b"messages" not in result.stdout
        assert_clean_stderr(result)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and (tmp_path / "to-fifo").is_symlink()
    assert spamlearn("eval", "--index", index, "--results", os.devnull).returncode == 0


def test_eval_refuses_a_report_folder_it_cannot_write_in_before_the_run(tmp_path, read_only_folder):
    """An existing --report folder was checked on its parent only: the run
    went through, then exit 74 at the first picture, its figures never shown."""
    index = tmp_path / "index"
    index.write_text(f"spam {os.getcwd()}/tests/fixtures/sample-spam.eml\n"
                     f"ham {os.getcwd()}/tests/fixtures/sample-ham.eml\n")
    (read_only_folder.path / "results.txt").write_text("")
    read_only_folder.freeze()
    result = spamlearn("eval", "--index", index, "--report", read_only_folder.path)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert f"cannot write in {read_only_folder.path}" in result.stderr.decode()
    assert_clean_stderr(result)
    if os.geteuid() != 0:                     # root writes any file of a writable filesystem
        read_only_folder.close()
        (read_only_folder.path / "results.txt").chmod(0o444)
        result = spamlearn("eval", "--index", index, "--results", read_only_folder.path / "results.txt")
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert "cannot write it" in result.stderr.decode()


def test_eval_prints_its_figures_before_a_full_disk_stops_the_pictures(tmp_path):
    """The figures came after --plot and --report were written: a disk that
    filled up during a long run took them with it (exit 74, nothing shown)."""
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"this test mounts a small tmpfs, as root: {mounted.stderr}"
    try:
        with open(full / "filler", "wb", buffering=0) as filler, pytest.raises(OSError):
            while True:
                filler.write(b"x" * 4096)
        index = tmp_path / "index"
        index.write_text(f"spam {os.getcwd()}/tests/fixtures/sample-spam.eml\n"
                         f"ham {os.getcwd()}/tests/fixtures/sample-ham.eml\n")
        result = spamlearn("eval", "--index", index, "--plot", full / "roc.png")
        assert result.returncode == ExitCode.IOERR, result.stderr
        assert b"2 messages (1 spam, 1 ham)" in result.stdout and b"(1-ROCA)%" in result.stdout
        assert b"disk full" in result.stderr
        assert_clean_stderr(result)
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)


def test_eval_names_the_corpus_of_a_relative_index_in_its_report(tmp_path):
    """``--index index`` (run from the corpus's folder) titled the pictures
    "spamlearn on index": the parent of a relative path's parent is ""."""
    full = tmp_path / "mycorpus" / "full"
    full.mkdir(parents=True)
    (full / "index").write_text(f"spam {os.getcwd()}/tests/fixtures/sample-spam.eml\n"
                                f"ham {os.getcwd()}/tests/fixtures/sample-ham.eml\n")
    result = subprocess.run([sys.executable, "-m", "spamlearn", "eval", "--index", "index",
                             "--report", "report"], cwd=full, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "spamlearn on mycorpus" in (full / "report" / "index.html").read_text()


def _with_closed(fds, *args):
    """Run spamlearn with the descriptors ``fds`` closed, as `cmd <&- >&- 2>&-` does;
    stderr, when open, is captured."""
    def close():
        for fd in fds:
            os.close(fd)
    stdin = None if 0 in fds else subprocess.DEVNULL
    return subprocess.run([sys.executable, "-m", "spamlearn", *map(str, args)], stdin=stdin,
                          stdout=subprocess.PIPE if 1 not in fds else None,
                          stderr=subprocess.PIPE if 2 not in fds else None,
                          preexec_fn=close, timeout=120)


@pytest.mark.parametrize("args, expected", [
    (("filter",), ExitCode.IOERR),
    (("score", "-"), ExitCode.NOINPUT),
    (("learn", "--spam", "-"), ExitCode.NOINPUT),
])
def test_closed_stdin_is_an_error_not_a_crash(tmp_path, args, expected):
    model = ("--model", tmp_path / "m.joblib") if args[0] == "learn" else ()  # score: the default
    result = _with_closed([0], *model, *args)
    assert result.returncode == expected, result.stderr
    assert b"standard input is closed" in result.stderr and b"internal error" not in result.stderr


def test_closed_stdout_is_an_io_error(tmp_path):
    result = _with_closed([1], "score", "tests/fixtures/sample-spam.eml")
    assert result.returncode == ExitCode.IOERR
    assert result.stderr.strip() == b"spamlearn: error: standard output is closed"


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["learn", "--help"], ["exit-codes"]])
def test_a_full_stdout_is_an_io_error_outside_a_command_too(args):
    """Commands map a failed write to 74 (handle_errors); --help, --version
    and exit-codes > /dev/full were "internal error (a bug)", exit 70."""
    with open("/dev/full", "wb") as full:
        result = subprocess.run([sys.executable, "-m", "spamlearn", *args], stdout=full,
                                stderr=subprocess.PIPE, timeout=120)
    assert result.returncode == ExitCode.IOERR, result.stderr
    assert result.stderr == b"spamlearn: error: disk full: writing the output\n"


@pytest.mark.parametrize("exit_zero", [[], ["--exit-zero"]])
def test_a_filter_whose_reader_leaves_mid_message_fails_whatever_exit_zero_says(tmp_path, exit_zero):
    """The reader takes one byte of a 200 KB message and leaves: the rest
    cannot be passed on, and the caller must not take the cut copy for the
    mail (BufferedWriter.write returned short then, without an error)."""
    raw = b"From: a@example.org\nSubject: s\n\n" + b"word " * 40_000
    proc = subprocess.Popen([sys.executable, "-m", "spamlearn", "filter", *exit_zero], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(raw)
    proc.stdin.close()
    assert proc.stdout.read(1) == b"X"          # its X-Spam headers come first
    proc.stdout.close()
    with proc.stderr:
        assert proc.wait(timeout=60) == ExitCode.IOERR
        assert b"cannot write the message to standard output" in proc.stderr.read()


def test_closed_stderr_keeps_the_exit_code(tmp_path):
    """Errors then go nowhere, but cron and Postfix still get the right code (it was 1)."""
    assert _with_closed([2], "score", tmp_path / "missing.eml").returncode == ExitCode.NOINPUT
    ok = _with_closed([2], "score", "tests/fixtures/sample-spam.eml")
    assert ok.returncode == 0 and b"\tspam\t" in ok.stdout


def test_train_reports_a_corrupt_ledger_before_trying_the_server(tmp_path):
    """The server (a closed port here) would be retried for minutes and
    reported as unreachable (69); the broken ledger is what to fix."""
    model = tmp_path / "m.joblib"
    (tmp_path / "m.ledger").write_bytes(b"not a database at all" * 100)
    password = tmp_path / "password"
    password.write_text("secret\n")
    password.chmod(0o600)
    config = tmp_path / "spamlearn.toml"
    config.write_text(f'[model]\npath = "{model}"\n[[accounts]]\nname = "a"\nhost = "127.0.0.1"\n'
                      f'port = 1\nsecurity = "plain"\nusername = "u"\npassword_file = "{password}"\n'
                      'spam_folders = ["Junk"]\nretries = 3\nretry_delay = 5\n')
    started = time.monotonic()
    result = spamlearn("--config", config, "train")
    assert time.monotonic() - started < 20
    assert result.returncode == ExitCode.IOERR, result.stderr
    assert "cannot open ledger" in result.stderr.decode()
    assert_clean_stderr(result)


@pytest.mark.parametrize("signum, whom, code", [(signal.SIGINT, "group", 130),
                                                (signal.SIGTERM, "score", 143)])
def test_score_with_workers_stops_on_a_signal_without_their_tracebacks(tmp_path, signum, whom, code):
    """Ctrl-C reaches the terminal's whole process group: each scoring worker
    printed "Process ForkPoolWorker-1:" and its KeyboardInterrupt traceback.
    SIGTERM to score alone (``timeout``, ``kill``) killed it outright and
    left the workers writing to its closed pipe: a BrokenPipeError traceback
    each.  The output is not read past the first line, so the workers wait
    mid-run when the signal comes."""
    folder = tmp_path / "mail"
    folder.mkdir()
    for i in range(3000):       # more lines than a pipe holds
        (folder / f"{i:04d}.eml").write_bytes(b"From: a%d@example.org\nSubject: %d\n\nhello\n" % (i, i))
    # SIGINT as a terminal leaves it, whatever a background job's ignoring says.
    process = subprocess.Popen([sys.executable, "-m", "spamlearn", "score", "--jobs", "2", str(folder)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert process.stdout.readline()
        time.sleep(0.3)
        if whom == "group":
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code, stderr
    assert stderr == (b"spamlearn: error: interrupted\n" if signum == signal.SIGINT else b"")

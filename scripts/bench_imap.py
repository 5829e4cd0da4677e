#!/usr/bin/env python3
"""Benchmark the IMAP trainer on the SpamAssassin corpus in a throw-away Dovecot.

Uploads the whole corpus (6,046 messages: spam into Junk, ham into INBOX)
into a local Dovecot started with ``tests/integration/dovecot.py``, then
times, with the library API (what ``spamlearn train`` runs):

1. a first full pass over both folders, from an empty model;
2. an incremental pass after 100 new messages arrived (50 in each folder);
3. an idle pass (nothing new: one STATUS per folder).

and prints messages/s, seconds and where the time went (IMAP, tokenizing
and learning, store commits).  Usage::

    python scripts/bench_imap.py [--batch-size 200] [--limit N] [--json]

Needs ``dovecot-imapd`` (see .ci/run).  The machine is shared: numbers
taken while other work runs are noisy; run it twice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "scripts"))

from corpus import corpus_index  # noqa: E402
from dovecot import DovecotServer  # noqa: E402

from spamlearn.config import load_settings  # noqa: E402
from spamlearn.imap import Trainer, load_accounts, store_for  # noqa: E402

PASSWORD = "bench-Secret-1"


def read_corpus(limit: int) -> tuple[list[bytes], list[bytes]]:
    index = corpus_index()
    spam, ham = [], []
    for line in index.read_text().splitlines()[: limit or None]:
        label, rel = line.split()
        raw = (index.parent / rel).read_bytes()
        (spam if label == "spam" else ham).append(raw)
    return spam, ham


def upload(server: DovecotServer, folder: str, messages: list[bytes]) -> None:
    client = server.connect("bench")
    try:
        for start in range(0, len(messages), 200):  # MULTIAPPEND: one round trip per 200
            client.multiappend(folder, messages[start:start + 200])
    finally:
        client.logout()


def variant(raw: bytes, n: int) -> bytes:
    """A new message (new digest) that reads like a corpus one."""
    return f"X-Bench-Copy: {n}\r\n".encode() + raw


def run_pass(settings, label: str) -> dict:
    (account,) = load_accounts(settings)
    started = time.perf_counter()
    report = Trainer(settings).train_account(account)
    seconds = time.perf_counter() - started
    if report.error or report.exit_code:
        raise SystemExit(f"{label}: pass failed: {report.error} (exit {report.exit_code})")
    data = report.as_dict()
    messages = data["learned_spam"] + data["learned_ham"] + data["already_known"] + data["errors"]
    return {"pass": label, "messages": messages, "learned_spam": data["learned_spam"],
            "learned_ham": data["learned_ham"], "seconds": round(seconds, 2),
            "messages_per_second": round(messages / seconds, 1) if messages else None,
            "timings": data["timings"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N corpus messages")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    spam, ham = read_corpus(args.limit)
    with tempfile.TemporaryDirectory(prefix="spamlearn-bench-") as tmp, \
            DovecotServer(users={"bench": PASSWORD}) as server:
        tmp = Path(tmp)
        t = time.perf_counter()
        upload(server, "Junk", spam)
        upload(server, "INBOX", ham)
        upload_s = time.perf_counter() - t
        (tmp / "secret").write_text(PASSWORD)
        (tmp / "secret").chmod(0o600)
        config = tmp / "spamlearn.toml"
        config.write_text(
            f'[model]\npath = "{tmp / "model.joblib"}"\n\n[[accounts]]\nname = "bench"\n'
            f'host = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\nusername = "bench"\n'
            f'password_file = "{tmp / "secret"}"\nspam_folders = ["Junk"]\nham_folders = ["INBOX"]\n'
            f'batch_size = {args.batch_size}\n')
        settings = load_settings(config)

        results = [run_pass(settings, "first full pass")]
        upload(server, "Junk", [variant(raw, i) for i, raw in enumerate(spam[:50])])
        upload(server, "INBOX", [variant(raw, i) for i, raw in enumerate(ham[:50])])
        results.append(run_pass(settings, "incremental, 100 new"))
        results.append(run_pass(settings, "idle (nothing new)"))

        (account,) = load_accounts(settings)
        store = store_for(settings, account)
        problems = store.check()
        info = store.info()
        summary = {"corpus": {"spam": len(spam), "ham": len(ham)}, "upload_seconds": round(upload_s, 1),
                   "batch_size": args.batch_size, "passes": results,
                   "model": {"n_spam": info["n_spam"], "n_ham": info["n_ham"],
                             "size_mb": round(info["size_bytes"] / 1e6, 2)},
                   "check": problems or "ok"}
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"corpus: {len(spam)} spam in Junk, {len(ham)} ham in INBOX "
          f"(uploaded in {upload_s:.1f} s); batch size {args.batch_size}")
    for r in results:
        rate = f"{r['messages_per_second']:.0f} msg/s" if r["messages_per_second"] else "-"
        tm = r["timings"]
        print(f"{r['pass']:<22} {r['messages']:>5} messages {r['seconds']:>7.2f} s  {rate:>10}   "
              f"(imap {tm['imap']:.2f} s, learn {tm['learn']:.2f} s, store {tm['store']:.2f} s)")
    print(f"model: {info['n_spam']} spam, {info['n_ham']} ham, {summary['model']['size_mb']} MB; "
          f"check: {summary['check']}")


if __name__ == "__main__":
    main()

"""Whether `spamlearn serve` stays healthy over a long run: a mail server's mix, sampled.

    python scripts/soak_serve.py [--minutes 12] [--every 20] [--clients 4] [--pause 0.02]
                                 [--users 30] [--max-user-models 8] [--sighups 2]

1. Unpacks the SpamAssassin corpus (scripts/corpus.py) and, in a temporary
   folder, trains a shared model on 400 of its messages and ``--users``
   users' own models on 24 each (more users than ``--max-user-models``, so
   that the workers evict and reload users' models all the time).
2. Starts a real ``spamlearn serve``: 2 workers, learn and score tokens,
   ``spamd_listen`` (with TELL allowed) on a free loopback port.
3. ``--clients`` threads send, each ``--pause`` seconds apart on average:
   POST /score and /filter (most for a user, by header or ``?user=``),
   spamd CHECK, PROCESS, SYMBOLS, REPORT and HEADERS, now and then POST
   /learn, /forget and spamd TELL (each rewrites a model file, which the
   workers then reload), /healthz and /metrics, and bad requests: garbage
   bodies, wrong or missing tokens, bodies over the limit, bad users and
   labels, clients that hang up mid-request (HTTP and spamd), port checks.
   ``--sighups`` SIGHUPs are spread over the run (the workers are replaced).
4. Every ``--every`` seconds prints each process's RSS, open descriptors and
   threads, the files in the workers' metrics folder, and the requests
   sent and failed so far (a failure: an answer other than the one the
   README promises, or a broken connection).
5. At the end: each worker's first, middle and last sample, the spamd and
   HTTP request totals /metrics reports, and what the service logged at
   WARNING or above, by kind.  Exit 1 when a request failed or the log
   holds a traceback.

What to look for: RSS, descriptors or files that grow to the end of a
worker's life instead of levelling off.  The users' models a worker keeps
are bounded (``max_user_models``, 16 MB each with the default features);
2026-11-30, 2 workers, 8 of 30 users kept, ~150 requests/s: 270-320 MB
RSS per worker, 22-29 descriptors, 8-10 threads, flat over 14 minutes.
The host is shared and has 2 cores: keep ``--clients`` and ``--pause``
moderate (the defaults send ~150 requests/s).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from corpus import corpus_index  # noqa: E402
from serve_process import ServeProcess, clean_environment, free_port  # noqa: E402


class Tally:
    """Requests sent and failed, by kind; the first failures, for the report."""

    def __init__(self) -> None:
        self.sent: collections.Counter[str] = collections.Counter()
        self.failed: collections.Counter[str] = collections.Counter()
        self.examples: list[str] = []
        self._lock = threading.Lock()

    def note(self, kind: str, ok: bool, what: object = "") -> None:
        with self._lock:
            self.sent[kind] += 1
            if not ok:
                self.failed[kind] += 1
                if len(self.examples) < 20:
                    self.examples.append(f"{time.strftime('%H:%M:%S')} {kind}: {what!s:.120}")


# -- the deployment ------------------------------------------------------------------------
def build_deployment(base: Path, messages: list[tuple[str, bytes]], users: int,
                     max_user_models: int, spamd_port: int) -> tuple[Path, dict[str, str]]:
    """A config file, two tokens, a trained shared model and users' own models in ``base``."""
    from spamlearn.config import load_settings
    from spamlearn.modelstore import ModelStore

    tokens = {"learn": os.urandom(24).hex(), "score": os.urandom(24).hex()}
    for name, token in tokens.items():
        path = base / f"{name}.token"
        path.write_text(token + "\n")
        path.chmod(0o600)
    names = ", ".join(f'"u{n:02d}"' for n in range(users))
    config = base / "spamlearn.toml"
    config.write_text(f'[model]\npath = "{base}/model.joblib"\nmin_messages = 10\n\n'
                      f'[users]\ndir = "{base}/users"\nown_model = [{names}]\n\n'
                      f'[server]\nworkers = 2\nlearn_token_file = "{base}/learn.token"\n'
                      f'score_token_file = "{base}/score.token"\nper_user = true\n'
                      f'max_user_models = {max_user_models}\nspamd_listen = "127.0.0.1:{spamd_port}"\n'
                      f'spamd_allow_tell = true\n')
    config.chmod(0o600)
    settings = load_settings(config)
    spam = [raw for label, raw in messages if label == "spam"]
    ham = [raw for label, raw in messages if label == "ham"]
    with ModelStore.from_settings(settings).session(source="soak") as session:
        for raw in spam[:200]:
            session.learn(raw, "spam")
        for raw in ham[:200]:
            session.learn(raw, "ham")
    rng = random.Random(1)
    for n in range(users):
        with ModelStore.from_settings(settings, f"u{n:02d}").session(source="soak") as session:
            for raw in rng.sample(spam[200:600], 12):
                session.learn(raw, "spam")
            for raw in rng.sample(ham[200:600], 12):
                session.learn(raw, "ham")
    return config, tokens


# -- the clients ---------------------------------------------------------------------------
def spamd_ask(port: int, data: bytes, *, hang_up_after: int | None = None) -> bytes:
    """Send ``data`` and read the answer to the end, as spamc does; with
    ``hang_up_after``, send that much and close without reading."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        if hang_up_after is not None:
            connection.sendall(data[:hang_up_after])
            return b""
        connection.sendall(data)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def spamd_request(command: str, body: bytes, *headers: str) -> bytes:
    head = [f"{command} SPAMC/1.5", *headers, f"Content-length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def http_hang_up(port: int, data: bytes) -> None:
    """Send ``data`` (part of a request) and close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)


class Client:
    """One mail server's connection to the service, sending the mix."""

    def __init__(self, n: int, url: str, spamd_port: int, messages: list[tuple[str, bytes]],
                 tokens: dict[str, str], users: list[str], tally: Tally):
        self.rng = random.Random(n)
        self.url, self.port, self.spamd_port = url, int(url.rsplit(":", 1)[1]), spamd_port
        self.messages, self.users, self.tally = messages, users, tally
        self.learner = f"Bearer {tokens['learn']}"
        self.scorer = f"Bearer {tokens['score']}"
        self.http = httpx.Client(base_url=url, timeout=30)

    def run(self, stop_at: float, pause: float) -> None:
        try:
            while time.monotonic() < stop_at:
                time.sleep(self.rng.uniform(0, 2 * pause))
                try:
                    self.one()
                except (httpx.TransportError, OSError) as exc:
                    self.tally.note("connection", False, f"{type(exc).__name__}: {exc}")
        finally:
            self.http.close()

    def one(self) -> None:
        rng, note = self.rng, self.tally.note
        label, body = rng.choice(self.messages)
        user = rng.choice(self.users) if rng.random() < 0.7 else None
        scoring = {"Authorization": self.scorer, "Content-Type": "message/rfc822"}
        learning = {"Authorization": self.learner, "Content-Type": "message/rfc822"}
        as_user = {"user": user} if user else {}
        roll = rng.random()
        if roll < 0.30:
            headers, params = dict(scoring), {}
            if user and rng.random() < 0.5:
                headers["X-Spamlearn-User"] = user
            else:
                params.update(as_user)
            if rng.random() < 0.1:      # a user's clues need the learn token
                headers["Authorization"], params["explain"] = self.learner, "true"
            answer = self.http.post("/score", content=body, headers=headers, params=params)
            note("score", answer.status_code == 200, f"{answer.status_code} {answer.text}")
        elif roll < 0.45:
            headers = {**scoring, **({"X-Spamlearn-User": user} if user else {})}
            if rng.random() < 0.3:
                headers["Connection"] = "close"
            answer = self.http.post("/filter", content=body, headers=headers)
            note("filter", answer.status_code == 200, f"{answer.status_code} {answer.text}")
        elif roll < 0.65:
            command = rng.choice(["CHECK", "PROCESS", "SYMBOLS", "REPORT", "HEADERS"])
            reply = spamd_ask(self.spamd_port, spamd_request(command, body, *(
                [f"User: {user}"] if user else [])))
            note("spamd", reply.startswith(b"SPAMD/1.1 0 EX_OK"), reply[:80])
        elif roll < 0.69:
            answer = self.http.post("/learn", content=body, headers=learning,
                                    params={"label": rng.choice(["spam", "ham", label]), **as_user})
            note("learn", answer.status_code == 200, f"{answer.status_code} {answer.text}")
        elif roll < 0.71:
            answer = self.http.post("/forget", content=body, headers=learning, params=as_user)
            note("forget", answer.status_code == 200, f"{answer.status_code} {answer.text}")
        elif roll < 0.73:
            what = rng.choice(["Message-class: spam\r\nSet: local", "Message-class: ham\r\nSet: local",
                               "Remove: local"])
            reply = spamd_ask(self.spamd_port, spamd_request("TELL", body, what, *(
                [f"User: {user}"] if user else [])))
            note("tell", reply.startswith(b"SPAMD/1.1 0 EX_OK"), reply[:80])
        elif roll < 0.75:
            answer = self.http.get("/healthz", headers={"Authorization": self.learner}
                                   if rng.random() < 0.5 else {})
            note("healthz", answer.status_code == 200, answer.status_code)
        elif roll < 0.76:
            answer = self.http.get("/metrics", headers=scoring)
            note("metrics", answer.status_code == 200, answer.status_code)
        else:
            self.bad(body)

    def bad(self, body: bytes) -> None:
        """A request the service must refuse cleanly (or a client gone mid-request)."""
        rng, note, post = self.rng, self.tally.note, self.http.post
        scoring = {"Authorization": self.scorer, "Content-Type": "message/rfc822"}
        kind = rng.choice(["garbage", "wrong token", "no token", "learn with the score token",
                           "too big", "json", "bad user", "empty", "trailing slash", "bad label",
                           "http hang-up", "learn hang-up", "head hang-up", "spamd garbage",
                           "spamd hang-up", "spamd port check", "spamd short"])
        if kind == "garbage":
            answer = post("/score", content=os.urandom(rng.randint(1, 20000)), headers=scoring)
            note("bad", answer.status_code in (200, 400), f"{kind}: {answer.status_code}")
        elif kind in ("wrong token", "no token", "learn with the score token"):
            answer = (post("/score", content=body, headers={"Authorization": "Bearer nope"})
                      if kind == "wrong token" else post("/filter", content=body) if kind == "no token"
                      else post("/learn", content=body, params={"label": "spam"}, headers=scoring))
            note("bad", answer.status_code == 401, f"{kind}: {answer.status_code}")
        elif kind == "too big":
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as connection:
                connection.sendall(f"POST /score HTTP/1.1\r\nHost: soak\r\nAuthorization: {self.scorer}\r\n"
                                   f"Content-Length: {10**9}\r\n\r\n".encode() + b"x" * 100)
                head = connection.recv(100)
            note("bad", head.startswith(b"HTTP/1.1 413"), f"{kind}: {head[:40]!r}")
        elif kind == "json":
            answer = post("/score", json={"message": "hi"}, headers={"Authorization": self.scorer})
            note("bad", answer.status_code == 415, f"{kind}: {answer.status_code}")
        elif kind in ("bad user", "empty", "trailing slash"):
            answer = (post("/score", content=body, headers=scoring, params={"user": "../etc/passwd"})
                      if kind == "bad user" else post("/score", content=b"", headers=scoring)
                      if kind == "empty" else post("/score/", content=body, headers=scoring))
            want = 404 if kind == "trailing slash" else 400
            note("bad", answer.status_code == want, f"{kind}: {answer.status_code}")
        elif kind == "bad label":
            answer = post("/learn", content=body, params={"label": "maybe"},
                          headers={"Authorization": self.learner})
            note("bad", answer.status_code == 422, f"{kind}: {answer.status_code}")
        elif kind in ("http hang-up", "learn hang-up"):
            path, token = ("/score", self.scorer) if kind == "http hang-up" else ("/learn?label=spam",
                                                                                  self.learner)
            http_hang_up(self.port, f"POST {path} HTTP/1.1\r\nHost: soak\r\nAuthorization: {token}\r\n"
                                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:len(body) // 2])
            note("bad", True)
        elif kind == "head hang-up":
            http_hang_up(self.port, b"POST /score HTTP/1.1\r\nHost: soak\r\nContent-Le")
            note("bad", True)
        elif kind == "spamd garbage":
            reply = spamd_ask(self.spamd_port, os.urandom(rng.randint(1, 3000)))
            note("bad", reply.startswith(b"SPAMD/1.1 ") or reply == b"", f"{kind}: {reply[:60]!r}")
        elif kind == "spamd hang-up":
            data = spamd_request("CHECK", body)
            spamd_ask(self.spamd_port, data, hang_up_after=len(data) // 2)
            note("bad", True)
        elif kind == "spamd port check":
            spamd_ask(self.spamd_port, b"", hang_up_after=0)
            note("bad", True)
        else:   # a Content-length longer than the message sent
            reply = spamd_ask(self.spamd_port, spamd_request("CHECK", body)[:-10])
            note("bad", reply.startswith(b"SPAMD/1.1 76"), f"{kind}: {reply[:60]!r}")


# -- the measurements ----------------------------------------------------------------------
def process_sample(pid: int) -> dict[str, int] | None:
    """RSS (MB), open descriptors and threads of ``pid``; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) // 1024, "fds": fds,
            "threads": int(fields["Threads"])}


def metrics_folder(pids: list[int]) -> Path | None:
    """The workers' metrics folder, from a worker's environment (``SPAMLEARN_SERVE_ARGS``)."""
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"SPAMLEARN_SERVE_ARGS="):
                return Path(json.loads(item.split(b"=", 1)[1])["metrics_dir"])
    return None


def role(pid: int, server_pid: int) -> str:
    if pid == server_pid:
        return "supervisor"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    # uvicorn's workers are spawned; the other child is multiprocessing's resource tracker.
    return "worker" if b"spawn_main" in command else "helper"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--every", type=float, default=20.0, help="seconds between samples")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.02, help="mean seconds between a client's requests")
    parser.add_argument("--users", type=int, default=30, help="users with their own model")
    parser.add_argument("--max-user-models", type=int, default=8)
    parser.add_argument("--sighups", type=int, default=2, help="SIGHUPs spread over the run")
    args = parser.parse_args()

    index = corpus_index()
    lines = [line.split() for line in index.read_text().splitlines() if line.strip()]
    random.Random(7).shuffle(lines)
    messages = [(label, (index.parent / path).read_bytes()) for label, path in lines[:1500]]
    users = [f"u{n:02d}" for n in range(args.users)] + ["nobody", "Bob+tag"]
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="spamlearn-soak-") as tmp:
        base = Path(tmp)
        spamd_port = free_port()
        config, tokens = build_deployment(base, messages, args.users, args.max_user_models, spamd_port)
        server = ServeProcess(config, base / "serve.log", clean_environment(base / "home")).start()
        try:
            samples = soak(server, spamd_port, messages, tokens, users, tally, args)
            final = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {tokens['score']}"},
                              timeout=30).text
        finally:
            server.stop()
        log = (base / "serve.log").read_text(errors="replace")
    report(samples, final, log, tally)
    sys.exit(1 if sum(tally.failed.values()) or "Traceback" in log else 0)


def soak(server: ServeProcess, spamd_port: int, messages, tokens, users, tally: Tally,
         args: argparse.Namespace) -> list[dict]:
    seconds = args.minutes * 60
    start = time.monotonic()
    stop_at = start + seconds
    clients = [threading.Thread(target=Client(n, server.url, spamd_port, messages, tokens, users, tally).run,
                                args=(stop_at, args.pause), daemon=True) for n in range(args.clients)]
    for thread in clients:
        thread.start()
    hangups = [start + seconds * (k + 1) / (args.sighups + 1) for k in range(args.sighups)]
    samples: list[dict] = []
    next_sample = start
    print("     t | process          |  RSS MB | fds | threads | metrics files | requests | failed")
    while any(thread.is_alive() for thread in clients) or time.monotonic() < stop_at:
        now = time.monotonic()
        if hangups and now >= hangups[0]:
            hangups.pop(0)
            server.process.send_signal(signal.SIGHUP)
            print(f"{now - start:5.0f}s | SIGHUP", flush=True)
        if now >= next_sample:
            pids = server.worker_pids()
            folder = metrics_folder(pids[1:])
            files = len(list(folder.iterdir())) if folder and folder.exists() else 0
            sent, failed = sum(tally.sent.values()), sum(tally.failed.values())
            for pid in pids:
                sample = process_sample(pid)
                if sample is None:
                    continue
                row = {"t": round(now - start), "pid": pid, "role": role(pid, server.process.pid), **sample,
                       "files": files, "sent": sent, "failed": failed}
                samples.append(row)
                print(f"{row['t']:5d}s | {row['role']:10s} {pid:>6d}| {row['rss_mb']:7d} | {row['fds']:3d} | "
                      f"{row['threads']:7d} | {files:13d} | {sent:8d} | {failed:6d}", flush=True)
            next_sample += args.every
        time.sleep(0.2)
    return samples


def report(samples: list[dict], metrics: str, log: str, tally: Tally) -> None:
    print("\nEach worker's first, middle and last sample (a SIGHUP replaces them all):")
    print("| worker | samples | t (s) | RSS MB | fds | threads |")
    print("| --- | --- | --- | --- | --- | --- |")
    by_pid: dict[int, list[dict]] = collections.defaultdict(list)
    for row in samples:
        if row["role"] == "worker":
            by_pid[row["pid"]].append(row)
    for pid, rows in by_pid.items():
        picked = [rows[0], rows[len(rows) // 2], rows[-1]]
        cell = " / ".join
        print(f"| {pid} | {len(rows)} | {cell(str(r['t']) for r in picked)} | "
              f"{cell(str(r['rss_mb']) for r in picked)} | {cell(str(r['fds']) for r in picked)} | "
              f"{cell(str(r['threads']) for r in picked)} |")
    totals: collections.Counter[str] = collections.Counter()
    for line in metrics.splitlines():
        match = re.match(r'spamlearn_(http|spamd)_requests_total\{.*\} (\S+)$', line)
        if match:
            totals[match[1]] += int(float(match[2]))
    print(f"\n/metrics at the end: {totals['http']} HTTP and {totals['spamd']} spamd requests answered")
    print(f"sent: {dict(tally.sent)}; failed: {dict(tally.failed) or 'none'}")
    for example in tally.examples:
        print(f"  {example}")
    kinds = collections.Counter(
        re.sub(r"\d+", "N", re.sub(r"(starting|after) .*", r"\1 ...", line.split(":", 1)[1][:90])).strip()
        for line in log.splitlines() if re.match(r"(WARNING|ERROR|CRITICAL):", line))
    print(f"the service's log: {sum(kinds.values())} lines at WARNING or above, "
          f"{log.count('Traceback')} tracebacks")
    for kind, count in kinds.most_common(12):
        print(f"  {count:6d}  {kind}")


if __name__ == "__main__":
    main()

"""End to end: a real `spamlearn serve` (uvicorn, 2 workers) on a free loopback port, over httpx."""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess, clean_environment, terminate

from spamlearn.modelstore import ModelStore

pytestmark = pytest.mark.integration

TOKEN = "e2e-learn-token-0123456789abcdef"
LEARNER = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 1024 * 1024


def make_message(subject: str, body: str, sender: str = "someone@example.org") -> bytes:
    return f"From: {sender}\nTo: alice@example.org\nSubject: {subject}\n\n{body}\n".encode()


SPAMMY = [make_message("Cheap pills online", "Buy cheap pills now, best price", "deals@pharma.example"),
          make_message("You won a prize", "Claim your lottery prize money now", "win@lotto.example"),
          make_message("Make money fast", "Earn money from home fast, click now", "rich@cash.example")]
HAMMY = [make_message("Meeting tomorrow", "Can we move the project meeting to ten?", "bob@work.example"),
         make_message("Re: build failure", "The build fails on Debian: test data missing",
                      "dev@lists.example"),
         make_message("Lunch on Friday", "Lunch with the team on Friday?", "carol@work.example")]


def write_deployment(base: Path, workers: int = 2) -> tuple[Path, ModelStore, dict[str, str]]:
    """In ``base``: a config, a learn token file, a trained shared model, and an environment."""
    token_file = base / "learn.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    config = base / "spamlearn.toml"
    config.write_text(
        '[model]\npath = "model.joblib"\nmin_messages = 2\n\n'
        f'[server]\nlearn_token_file = "learn.token"\nmax_body_size = {MAX_BODY}\n'
        f'reload_interval = 0.2\nworkers = {workers}\n')
    store = ModelStore(base / "model.joblib", n_features=2**18)
    with store.session(source="setup") as session:
        for raw in SPAMMY:
            session.learn(raw, "spam")
        for raw in HAMMY:
            session.learn(raw, "ham")
    return config, store, clean_environment(base / "home")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A config, a trained shared model, and the service running on them with 2 workers."""
    base = tmp_path_factory.mktemp("serve")
    config, store, env = write_deployment(base)
    server = ServeProcess(config, base / "serve.log", env).start()
    try:
        yield server, store, config, env
    finally:
        assert server.stop() == 0, server.log.read_text()


@pytest.fixture
def service(deployment):
    return deployment[0]


@pytest.fixture
def store(deployment):
    return deployment[1]


def score(url, raw=SPAMMY[0], **kwargs):
    return httpx.post(f"{url}/score", content=raw, timeout=30, **kwargs)


def test_it_scores_with_the_shared_model_and_reports_health(service, store):
    response = score(service.url, headers={"Content-Type": "message/rfc822"})
    assert response.status_code == 200
    body = response.json()
    assert body["verdict"] == "spam" and body["model"]["kind"] == "shared"
    health = httpx.get(f"{service.url}/healthz").json()
    assert health["status"] == "ok" and health["learning"] is True
    assert health["model"]["revision"] == store.load().revision


def test_a_model_retrained_on_disk_answers_without_a_failed_request(service, store, deployment, tmp_path):
    """A thread scores in a loop while cron-style learners replace the model file 4 times."""
    _, _, config, env = deployment
    results: list[tuple[int, int | None]] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer():
        with httpx.Client(base_url=service.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post("/score", content=SPAMMY[1])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                revision = response.json()["model"]["revision"] if response.status_code == 200 else None
                results.append((response.status_code, revision))

    def wait_until_answered_by(revision, consecutive=20, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recent = [r for _, r in results[-consecutive:]]
            if len(recent) == consecutive and set(recent) == {revision}:
                return
            time.sleep(0.05)
        raise AssertionError(f"revision {revision} not answering; last: {results[-consecutive:]}")

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for i in range(3):
            with store.session(source="cron") as session:
                session.learn(make_message(f"Retrain spam {i}", f"cheap offer {i} buy now"), "spam")
                session.learn(make_message(f"Retrain ham {i}", f"meeting notes {i} attached"), "ham")
            wait_until_answered_by(store.load().revision)
        message = tmp_path / "new.eml"
        message.write_bytes(make_message("Via the command line", "win a free prize now"))
        learned = subprocess.run([sys.executable, "-m", "spamlearn", "--config", str(config), "learn",
                                  "--spam", str(message)], env=env, capture_output=True, text=True)
        assert learned.returncode == 0, learned.stderr
        final = store.load().revision
        wait_until_answered_by(final)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert {status for status, _ in results} == {200}, "no request failed during the switches"
    assert len(results) > 100
    assert results[-1][1] == final


def test_learn_without_the_token_is_401_and_changes_nothing(service, store):
    before = store.model_path.read_bytes(), store.info()["ledger_counts"]
    raw = make_message("Unauthorised", "please learn me")
    missing = httpx.post(f"{service.url}/learn", params={"label": "spam"}, content=raw)
    wrong = httpx.post(f"{service.url}/learn", params={"label": "spam"}, content=raw,
                       headers={"Authorization": "Bearer " + "x" * len(TOKEN)})
    forget = httpx.post(f"{service.url}/forget", content=SPAMMY[0])
    for response in (missing, wrong, forget):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert (store.model_path.read_bytes(), store.info()["ledger_counts"]) == before


def test_an_oversized_body_is_413(service):
    big = b"Subject: big\n\n" + b"x" * (MAX_BODY + 1)
    declared = httpx.post(f"{service.url}/score", content=big, timeout=30)
    assert declared.status_code == 413 and str(MAX_BODY) in declared.json()["detail"]

    def chunks():  # chunked: no Content-Length to refuse up front
        yield b"Subject: big\n\n"
        for _ in range(20):
            yield b"y" * 65536
    streamed = httpx.post(f"{service.url}/score", content=chunks(), timeout=30)
    assert streamed.status_code == 413
    assert score(service.url).status_code == 200, "the service is fine afterwards"


@pytest.mark.parametrize("body, statuses", [
    (os.urandom(20000), {200}),
    (b"\xff\xfe\x00garbage" * 500, {200}),
    (b"", {400}),
    (b"not a message at all", {200}),
])
def test_a_garbage_body_is_a_4xx_or_a_score_never_a_500(service, body, statuses):
    response = score(service.url, body, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code in statuses
    assert response.headers["content-type"] == "application/json"


def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(service):
    """A filter giving up (curl --max-time) mid-upload: no traceback in the
    log, no 500 in the metrics (both happened), and the service goes on."""
    host, port = service.url.removeprefix("http://").rsplit(":", 1)
    for _ in range(4):     # reach both workers
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
    assert score(service.url).status_code == 200
    time.sleep(1.5)        # workers publish their counts once a second
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'endpoint="/score",status="500"' not in metrics
    assert "Exception in ASGI application" not in service.log.read_text()


def test_a_form_encoded_body_is_refused_not_learned_mangled(service, store):
    """`curl -d @message.eml` drops the line breaks: 415, nothing learned."""
    n_spam = store.load().n_spam
    mangled = SPAMMY[1].replace(b"\n", b"")
    response = httpx.post(f"{service.url}/learn", params={"label": "spam"}, content=mangled,
                          headers={**LEARNER, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415 and "--data-binary" in response.json()["detail"]
    assert store.load().n_spam == n_spam


def test_concurrent_learn_requests_for_the_same_message_count_once(service, store):
    raw = make_message("Concurrent", "the same message from sixteen clients at once")
    n_spam = store.load().n_spam

    def learn(_):
        return httpx.post(f"{service.url}/learn", params={"label": "spam"}, content=raw,
                          headers=LEARNER, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(learn, range(16)))
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses]
    actions = sorted(r.json()["action"] for r in responses)
    assert actions == ["already-known"] * 15 + ["learned"]
    assert store.load().n_spam == n_spam + 1
    assert store.check() == []


def test_metrics_add_up_the_requests_of_both_workers(service):
    def scored():
        text = httpx.get(f"{service.url}/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('spamlearn_http_requests_total{endpoint="/score",status="200"}'))

    before = scored()
    with httpx.Client(base_url=service.url, timeout=30) as client:
        pids = {client.post("/score", content=SPAMMY[0]).status_code for _ in range(40)}
    assert pids == {200}
    deadline = time.monotonic() + 10
    while scored() != before + 40 and time.monotonic() < deadline:
        time.sleep(0.2)  # other workers publish their counts once a second
    assert scored() == before + 40
    health_pids = {httpx.get(f"{service.url}/healthz").json()["pid"] for _ in range(30)}
    assert health_pids <= set(service.worker_pids())


def test_keep_alive_connections_end_up_spread_over_both_workers(service):
    """8 keep-alive clients that connect at once (the first worker to wake
    would accept them all) end up held by both workers: the busy one answers
    with ``Connection: close`` until the other holds its share."""
    clients = [httpx.Client(base_url=service.url, timeout=30) for _ in range(8)]
    holder = [0] * len(clients)
    closed = [0]
    stop = threading.Event()

    def run(n):
        client = clients[n]
        while not stop.is_set():
            response = client.post("/score", content=SPAMMY[n % 3])
            assert response.status_code == 200
            closed[0] += response.headers.get("connection") == "close"
            holder[n] = client.get("/healthz").json()["pid"]

    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        running = [pool.submit(run, n) for n in range(len(clients))]
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                time.sleep(0.5)
                held = [holder.count(pid) for pid in set(holder) if pid]
                if len(held) == 2 and min(held) >= 3:
                    break
        finally:
            stop.set()
        for future in running:
            future.result()
    for client in clients:
        client.close()
    assert set(holder) <= set(service.worker_pids())
    held = sorted(holder.count(pid) for pid in set(holder))
    assert len(held) == 2 and held[0] >= 3, (held, closed[0])


def test_the_example_clients_work(service, store, deployment, tmp_path):
    _, _, config, env = deployment
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    message = tmp_path / "m.eml"
    message.write_bytes(make_message("Example client", "free money from the example client"))
    token_file = config.parent / "learn.token"
    # With a trailing slash, as a URL is often written ("//score" was a 404).
    client_env = {**env, "SPAMLEARN_URL": service.url + "/", "SPAMLEARN_LEARN_TOKEN_FILE": str(token_file)}
    assert shutil.which("curl"), "curl is missing: apt-get install curl"
    shell = subprocess.run(["sh", str(scripts / "client_example.sh"), str(message), "spam"],
                           env=client_env, capture_output=True, text=True)
    assert shell.returncode == 0, shell.stderr
    assert '"verdict"' in shell.stdout and '"action":"learned"' in shell.stdout
    python = subprocess.run([sys.executable, str(scripts / "client_example.py"), str(message),
                             "--learn", "spam"], env=client_env, capture_output=True, text=True)
    assert python.returncode == 0, python.stderr
    assert "already-known" in python.stdout and "revision" in python.stdout


def replace_file(path: Path, content: bytes) -> None:
    """Put ``content`` at ``path`` as a writer would: a new file renamed over it."""
    incoming = path.with_name("incoming.tmp")
    incoming.write_bytes(content)
    os.replace(incoming, path)


def health_statuses(server: ServeProcess, until, timeout: float = 90.0) -> list[int]:
    """GET /healthz, each on a new connection (either worker may take it), until
    ``until(statuses)`` holds, the service exits or ``timeout`` passes."""
    statuses: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.process.poll() is None and not until(statuses):
        try:
            statuses.append(httpx.get(f"{server.url}/healthz", timeout=5).status_code)
        except httpx.TransportError:
            statuses.append(0)
        time.sleep(0.05)
    return statuses


def wait_for_both_workers(server: ServeProcess, timeout: float = 90.0) -> set[int]:
    """Until /healthz has answered from two processes (``start`` waits for one); their pids."""
    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < 2:
        assert time.monotonic() < deadline, f"one worker only: {pids}"
        pids.add(httpx.get(f"{server.url}/healthz", timeout=5).json()["pid"])
        time.sleep(0.05)
    return pids


def test_a_worker_replaced_while_the_model_file_is_corrupt_starts_without_it(tmp_path):
    """The running workers keep their model when the file goes bad; one of
    them killed, its replacement cannot load it.  uvicorn took that for a
    broken app and stopped the service, with exit 0: systemd's
    Restart=on-failure did not start it again.  Now the replacement answers
    503 until a good file appears."""
    config, store, env = write_deployment(tmp_path)
    server = ServeProcess(config, tmp_path / "serve.log", env).start()
    try:
        wait_for_both_workers(server)
        good = store.model_path.read_bytes()
        replace_file(store.model_path, b"\x80 not a model")
        assert {score(server.url).status_code for _ in range(10)} == {200}
        os.kill(httpx.get(f"{server.url}/healthz").json()["pid"], signal.SIGKILL)
        statuses = health_statuses(server, lambda seen: 503 in seen)
        assert server.process.poll() is None, server.log.read_text()
        assert 503 in statuses, statuses[-20:]
        replace_file(store.model_path, good)
        statuses = health_statuses(server, lambda seen: seen[-30:] == [200] * 30)
        assert statuses[-30:] == [200] * 30, statuses[-30:]
    finally:
        code = server.stop()
    assert code == 0, server.log.read_text()
    assert "starting without a model" in server.log.read_text()


def wait_for_log(server: ServeProcess, *texts: str, timeout: float = 90.0) -> str | None:
    """The first of ``texts`` the service logs, waiting for one."""
    deadline = time.monotonic() + timeout
    while True:
        log = server.log.read_text()
        found = [text for text in texts if text in log]
        if found or time.monotonic() > deadline or server.process.poll() is not None:
            return found[0] if found else None
        time.sleep(0.2)


def test_sighup_while_the_model_file_is_corrupt_keeps_the_workers_that_score(tmp_path):
    """uvicorn restarts the workers on SIGHUP, each replacement started
    before the worker it replaces is stopped.  The replacements started
    degraded (as for a worker that died), so the good workers were retired
    for ones answering 503 to everything (a reviewer's SIGHUP).  Now the
    restart is not begun, with one line; once the file is good, it is."""
    config, store, env = write_deployment(tmp_path)
    server = ServeProcess(config, tmp_path / "serve.log", env).start()
    try:
        workers = wait_for_both_workers(server)
        good = store.model_path.read_bytes()
        replace_file(store.model_path, b"\x80 not a model")
        assert {score(server.url).status_code for _ in range(10)} == {200}
        server.process.send_signal(signal.SIGHUP)
        outcome = wait_for_log(server, "workers are not restarted", "aborting the restart",
                               "starting without a model")
        statuses = health_statuses(server, lambda seen: len(seen) >= 30)
        assert outcome == "workers are not restarted" and statuses == [200] * 30, statuses
        replace_file(store.model_path, good)
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while workers & set(server.worker_pids()):
            assert time.monotonic() < deadline, "the workers were not restarted"
            time.sleep(0.2)
    finally:
        code = server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and log.count("workers are not restarted") == 1, log
    assert code == 0, log


def test_a_worker_that_cannot_start_stops_the_service_with_a_failing_exit(tmp_path):
    """The config file broken after the start, then a worker killed: its
    replacement cannot start, and uvicorn stops the others.  `serve`
    exited 0 then (systemd's Restart=on-failure left it down), and a worker
    that raised was replaced every 1.5 s for ever, a traceback each time."""
    config, _, env = write_deployment(tmp_path)
    server = ServeProcess(config, tmp_path / "serve.log", env).start()
    try:
        wait_for_both_workers(server)
        config.write_text(config.read_text() + "bogus_key = 1\n")
        os.kill(httpx.get(f"{server.url}/healthz").json()["pid"], signal.SIGKILL)
        code = server.process.wait(60)
    finally:
        server.stop()
    log = server.log.read_text()
    assert code == 69, log
    assert "cannot start a worker" in log and "bogus_key" in log and "Traceback" not in log
    assert "a worker failed to start" in log


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sighup_does_not_stop_the_service_and_a_stop_signal_exits_0(tmp_path, workers, stop_signal):
    """With one worker, uvicorn raised SIGTERM again once stopped, and the
    process died of it (143; 0 with several workers), and SIGHUP killed it
    at once: requests in flight dropped, and systemd counts a death by
    SIGHUP as clean, so Restart=on-failure left it down."""
    config, _, env = write_deployment(tmp_path, workers=workers)
    server = ServeProcess(config, tmp_path / "serve.log", env).start()
    try:
        server.process.send_signal(signal.SIGHUP)
        time.sleep(1)
        statuses = health_statuses(server, lambda seen: len(seen) >= 20)
        assert statuses == [200] * 20, statuses
        server.process.send_signal(stop_signal)
        code = server.process.wait(40)
    finally:
        server.stop()
    log = server.log.read_text()
    assert code == 0, log
    assert "Traceback" not in log
    if workers == 1:
        assert log.count("SIGHUP ignored: one worker serves") == 1, log


def test_the_counts_of_workers_a_sighup_replaced_stay_in_one_file(tmp_path):
    """Each SIGHUP left the replaced workers' snapshot files, read by every
    scrape for as long as the service ran (a soak: +2 files a SIGHUP)."""
    config, _, env = write_deployment(tmp_path)
    server = ServeProcess(config, tmp_path / "serve.log", env).start()

    def scored() -> float:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('spamlearn_http_requests_total{endpoint="/score",status="200"}'))

    def until(condition, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.2)

    try:
        old = wait_for_both_workers(server)
        environ = Path(f"/proc/{min(old)}/environ").read_bytes().split(b"\0")
        folder = Path(json.loads(next(v for v in environ if v.startswith(b"SPAMLEARN_SERVE_ARGS="))
                                 .split(b"=", 1)[1])["metrics_dir"])
        for _ in range(2):
            assert {score(server.url).status_code for _ in range(20)} == {200}
            server.process.send_signal(signal.SIGHUP)
            until(lambda replaced=old: not set(server.worker_pids()) & replaced)     # both replaced
            old = wait_for_both_workers(server)
        until(lambda: scored() == 40)       # never backwards, never twice
        files = sorted(p.name for p in folder.glob("*.json"))
    finally:
        server.stop()
    assert files == sorted(["retired.json", *(f"worker-{pid}.json" for pid in old)]), files
    assert "Traceback" not in server.log.read_text()


def test_learns_waiting_for_the_lock_at_sigterm_answer_503_not_500(tmp_path):
    """SIGTERM while learn requests wait for a lock another learner holds:
    their wait (learn_lock_timeout, 30 s) is as long as uvicorn's graceful
    shutdown, so they held the stop for 28 s here, or, when the timing fell
    the other way, were cancelled: a 500 each, with a CancelledError
    traceback in the log (a reviewer's).  They now stop waiting and answer
    503 with Retry-After, at once."""
    config, store, env = write_deployment(tmp_path)
    server = ServeProcess(config, tmp_path / "serve.log", env).start()
    answers: list[httpx.Response] = []

    def learn(n: int) -> None:
        answers.append(httpx.post(f"{server.url}/learn", params={"label": "spam"}, headers=LEARNER,
                                  content=make_message(f"Waiting {n}", "cheap pills"), timeout=60))

    lock = os.open(store.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        wait_for_both_workers(server)
        fcntl.flock(lock, fcntl.LOCK_EX)
        threads = [threading.Thread(target=learn, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)                 # all of them in, waiting for the lock
        server.process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        for thread in threads:
            thread.join(60)
        answered_in = time.monotonic() - stopped
        code = server.process.wait(60)
    finally:
        os.close(lock)
        server.stop()
    log = server.log.read_text()
    assert sorted(r.status_code for r in answers) == [503] * 6, [r.text for r in answers]
    assert all(r.headers["Retry-After"] and "stopping" in r.json()["detail"] for r in answers)
    assert answered_in < 5, answered_in
    assert code == 0 and "Traceback" not in log and "CancelledError" not in log, log


def test_it_serves_on_ipv6_loopback_and_says_where_with_brackets(tmp_path):
    """The start-up line printed "http://::1:8731", which names no port (RFC 3986)."""
    config, _, env = write_deployment(tmp_path, workers=1)
    with ServeProcess(config, tmp_path / "serve.log", env, host="::1") as server:
        assert server.url == f"http://[::1]:{server.port}"
        assert score(server.url).json()["verdict"] == "spam"
        assert f"serving on http://[::1]:{server.port} with 1 worker(s)" in server.log.read_text()



def test_the_start_up_line_says_when_the_model_file_is_not_there_yet(tmp_path):
    """It named the configured file as if it scored, where the packaged
    default does until a learner writes that file."""
    config, store, env = write_deployment(tmp_path, workers=1)
    store.model_path.unlink()
    store.ledger_path.unlink()
    with ServeProcess(config, tmp_path / "serve.log", env) as server:
        assert score(server.url).json()["model"]["kind"] == "default"
        line = next(x for x in server.log.read_text().splitlines() if "serving on" in x)
    assert line.endswith(f"model: {store.model_path} (not there yet: the packaged default scores "
                         "until it has learned 2 of each class)"), line

def test_a_second_ctrl_c_forces_a_quit_in_one_line_not_a_traceback(tmp_path):
    """uvicorn offers "CTRL+C to force quit"; doing so logged an ERROR with
    Starlette's whole lifespan traceback (a CancelledError)."""
    config, _, env = write_deployment(tmp_path, workers=1)
    server = ServeProcess(config, tmp_path / "serve.log", env).start()
    try:
        server.process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        server.process.send_signal(signal.SIGINT)
        code = server.process.wait(30)
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert "forced to quit" in log and code == 0, (code, log)


def test_port_0_says_the_port_is_the_kernels_and_uvicorns_line_names_it(tmp_path):
    """``--port 0`` printed "serving on http://127.0.0.1:0", an address no
    client can use; the port is chosen when uvicorn binds, and its own line
    names it."""
    config, _, env = write_deployment(tmp_path, workers=1)
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "spamlearn", "--config", str(config), "serve",
               "--port", "0", "--log-level", "info"]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while not (found := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        port = int(found.group(1))
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        terminate(process, 40)
    line = next(x for x in log.read_text().splitlines() if "serving on" in x)
    assert ("serving on http://127.0.0.1:0 (a free port: uvicorn's line below names it) "
            "with 1 worker(s)") in line, line

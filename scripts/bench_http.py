"""How fast `spamlearn serve` scores real mail over loopback, and what HTTP adds.

    python scripts/bench_http.py [--seconds 10] [--clients 1,8,32] [--messages 2000] [--json]
                                 [--protocol http|spamd]

1. Unpacks the SpamAssassin corpus (scripts/corpus.py) and reads the first
   ``--messages`` messages of its index (a fixed random order of spam and ham).
2. Times the library: ``Classifier.score(raw)`` on those messages with the
   packaged default model, in this process (CPU and wall time per message).
3. Starts a real ``spamlearn serve`` with its default worker count and the
   default model, and waits for /healthz.
4. For each client count, a load generator in another process (a minimal
   keep-alive HTTP/1.1 client on asyncio: far cheaper per request than
   httpx, so on a 2-core host it steals less CPU from the server) posts the
   same messages round-robin to /score for ``--seconds`` after a warm-up;
   reports requests/s and p50/p99 latency, the server's CPU seconds per
   request (utime+stime of its processes, from /proc) and the generator's.
   The clients connect at once, as a connection pool does, and honour
   ``Connection: close`` (the server moves connections off a busy worker
   that way) by reconnecting; the reconnections are counted, and their
   time is in the latency of the request that follows.
   With ``--protocol spamd`` the server also listens for spamc
   (``--spamd-listen``) and each client sends spamd ``CHECK`` requests
   there instead, one connection a request, as spamc, Exim and Rspamd do.
5. Reports the HTTP overhead as the server's CPU per request divided by the
   library's CPU per message, and the server's memory (RSS of each
   process, and PSS, which counts shared pages once) with the model loaded.

The host is shared and has 2 cores: the load generator, the server's
workers and anything else running compete for them; say so with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from corpus import corpus_index  # noqa: E402
from serve_process import ServeProcess, clean_environment, free_port  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the load generator (runs in its own process) --------------------------------------------
async def _client(host: str, port: int, bodies: list[bytes], offset: int, start_at: float,
                  stop_at: float, latencies: list[float], errors: list[str], reconnects: list[int]) -> None:
    """One keep-alive client: a request, wait for the answer, the next request.

    Honours ``Connection: close`` as every HTTP/1.1 client does (the server
    sends it to move a connection off a busy worker): closes and reconnects,
    and the reconnection is part of the next request's measured latency.
    """
    reader, writer = await asyncio.open_connection(host, port)
    heads = [f"POST /score HTTP/1.1\r\nHost: {host}\r\nContent-Type: message/rfc822\r\n"
             f"Content-Length: {len(b)}\r\n\r\n".encode() for b in bodies]
    i = offset
    closing = False
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            if closing:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                reconnects[0] += 1
                closing = False
            k = i % len(bodies)
            i += 1
            writer.write(heads[k] + bodies[k])
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                name = name.lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    closing = True
            await reader.readexactly(length)
            done = time.perf_counter()
            if not status_line.startswith(b"HTTP/1.1 200"):
                errors.append(status_line.decode(errors="replace").strip())
            elif now >= start_at:
                latencies.append(done - now)
    finally:
        writer.close()


async def _spamd_client(host: str, port: int, bodies: list[bytes], offset: int, start_at: float,
                       stop_at: float, latencies: list[float], errors: list[str],
                       reconnects: list[int]) -> None:
    """One spamc-like client: connect, CHECK, read the answer to the end, close."""
    heads = [f"CHECK SPAMC/1.5\r\nContent-length: {len(b)}\r\n\r\n".encode() for b in bodies]
    i = offset
    while (now := time.perf_counter()) < stop_at:
        k = i % len(bodies)
        i += 1
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(heads[k] + bodies[k])
            answer = await reader.read()
        finally:
            writer.close()
        done = time.perf_counter()
        if not answer.startswith(b"SPAMD/1.1 0 EX_OK\r\nSpam: "):
            errors.append(answer[:80].decode(errors="replace").strip())
        elif now >= start_at:
            latencies.append(done - now)


def _generate_load(host: str, port: int, bodies: list[bytes], clients: int, warmup: float,
                   seconds: float, out: multiprocessing.Queue, protocol: str = "http") -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    async def run() -> tuple[list[float], list[str], float, int, float]:
        latencies: list[float] = []
        errors: list[str] = []
        reconnects = [0]
        start_at = time.perf_counter() + warmup
        stop_at = start_at + seconds
        cpu = time.process_time()
        client = _spamd_client if protocol == "spamd" else _client
        await asyncio.gather(*(client(host, port, bodies, n * 97, start_at, stop_at, latencies, errors,
                                      reconnects) for n in range(clients)))
        return latencies, errors, seconds, reconnects[0], time.process_time() - cpu

    out.put(asyncio.run(run()))


# -- measurements ------------------------------------------------------------------------
def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def _memory(pids: list[int]) -> list[dict]:
    out = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        pss = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        role = "server" if "serve" in cmdline else "worker" if "spawn_main" in cmdline else "helper"
        out.append({"pid": pid, "role": role, "rss_mb": rss / 1024, "pss_mb": pss / 1024})
    return out


def library_cost(bodies: list[bytes]) -> dict:
    from spamlearn.config import load_settings
    from spamlearn.defaults import default_model_path
    from spamlearn.store import load_classifier

    settings = load_settings()
    classifier = load_classifier(default_model_path(), ham_cutoff=settings.ham_cutoff,
                                 spam_cutoff=settings.spam_cutoff, scan_limit=settings.scan_limit)
    for raw in bodies[:50]:
        classifier.score(raw)  # warm caches
    wall, cpu = time.perf_counter(), time.process_time()
    for raw in bodies:
        classifier.score(raw)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"messages": len(bodies), "wall_ms": 1000 * wall / len(bodies), "cpu_ms": 1000 * cpu / len(bodies)}


def run_level(server: ServeProcess, bodies: list[bytes], clients: int, warmup: float, seconds: float,
              spamd_port: int | None = None) -> dict:
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    port, protocol = (spamd_port, "spamd") if spamd_port else (server.port, "http")
    generator = multiprocessing.get_context("spawn").Process(
        target=_generate_load, args=("127.0.0.1", port, bodies, clients, warmup, seconds, queue, protocol))
    pids = server.worker_pids()
    generator.start()
    time.sleep(warmup)  # the generator's start-up and warm-up are not measured
    cpu_before = _cpu_seconds(pids)
    latencies, errors, measured, reconnects, generator_cpu = queue.get(timeout=warmup + seconds + 120)
    cpu_after = _cpu_seconds(pids)
    generator.join()
    latencies.sort()
    n = len(latencies)
    return {
        "clients": clients, "requests": n, "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "requests_per_s": n / measured,
        "p50_ms": 1000 * latencies[n // 2], "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))],
        "mean_ms": 1000 * statistics.fmean(latencies),
        # approximate: the CPU window is the generator's measured window plus its start-up skew
        "server_cpu_ms_per_request": 1000 * (cpu_after - cpu_before) / max(n, 1),
        # the generator's CPU over warm-up and measurement, per measured request (an upper bound)
        "generator_cpu_ms_per_request": 1000 * generator_cpu / max(n, 1),
        "reconnects": reconnects,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per client count")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=None, help="default: the server's default")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--protocol", choices=("http", "spamd"), default="http",
                        help="POST /score over HTTP, or spamd CHECK on the spamd port")
    args = parser.parse_args()

    index = corpus_index()
    paths = [index.parent / line.split()[1] for line in index.read_text().splitlines() if line.strip()]
    bodies = [p.read_bytes() for p in paths[: args.messages]]
    library = library_cost(bodies)

    with tempfile.TemporaryDirectory(prefix="spamlearn-bench-") as tmp:
        base = Path(tmp)
        config = base / "spamlearn.toml"
        config.write_text('[model]\npath = "model.joblib"\n')  # not there: the default model scores
        extra = ["--workers", str(args.workers)] if args.workers else []
        spamd_port = free_port() if args.protocol == "spamd" else None
        if spamd_port:
            extra += ["--spamd-listen", f"127.0.0.1:{spamd_port}"]
        server = ServeProcess(config, base / "serve.log", clean_environment(base / "home"), extra).start()
        try:
            pids = server.worker_pids()
            time.sleep(1.0)
            memory_idle = _memory(pids)
            levels = [run_level(server, bodies, int(c), args.warmup, args.seconds, spamd_port)
                      for c in args.clients.split(",")]
            memory_after = _memory(pids)
        finally:
            server.stop()

    workers = sum(1 for m in memory_idle if m["role"] == "worker") or 1  # 1: the server process serves
    one = levels[0]
    result = {
        "protocol": args.protocol, "cores": os.cpu_count(), "workers": workers, "library": library,
        "levels": levels,
        "overhead_cpu_ratio": one["server_cpu_ms_per_request"] / library["cpu_ms"],
        "overhead_latency_ratio_1_client": one["p50_ms"] / library["wall_ms"],
        "memory_idle": memory_idle, "memory_after": memory_after,
        "load_average": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.protocol}: {len(bodies)} SpamAssassin messages, {os.cpu_count()} cores, "
          f"{workers} worker(s), load average now {result['load_average'][0]:.1f}")
    print(f"library score(): {library['wall_ms']:.2f} ms wall, {library['cpu_ms']:.2f} ms CPU per message "
          f"({1000 / library['wall_ms']:.0f} messages/s on one core)")
    print("| clients | requests/s | p50 ms | p99 ms | server CPU ms/request | generator CPU ms/request "
          "| reconnects | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for level in levels:
        print(f"| {level['clients']} | {level['requests_per_s']:.0f} | {level['p50_ms']:.1f} | "
              f"{level['p99_ms']:.1f} | {level['server_cpu_ms_per_request']:.2f} | "
              f"{level['generator_cpu_ms_per_request']:.2f} | {level['reconnects']} | {level['errors']} |")
    print(f"{args.protocol} overhead: server CPU per request / library CPU per message = "
          f"{result['overhead_cpu_ratio']:.2f}x; p50 latency at 1 client / library wall time = "
          f"{result['overhead_latency_ratio_1_client']:.2f}x")
    for label, memory in (("idle, model loaded", memory_idle), ("after the run", memory_after)):
        parts = ", ".join(f"{m['role']} {m['rss_mb']:.0f} MB" for m in memory)
        print(f"memory ({label}): RSS {parts}; PSS total {sum(m['pss_mb'] for m in memory):.0f} MB")


if __name__ == "__main__":
    main()

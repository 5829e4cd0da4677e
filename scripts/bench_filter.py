"""What tagging one message at delivery costs: `scripts/spamlearnc`, `spamc`, `spamlearn filter`.

    python scripts/bench_filter.py [--messages 200]

A delivery agent (a Sieve `filter`, procmail, a Postfix pipe) starts one
program per message, one message after another.  This times exactly that
over the first ``--messages`` messages of the SpamAssassin index
(scripts/corpus.py unpacks it), with the packaged default model:

* ``spamlearn filter --exit-zero`` (a Python process per message: imports
  and the model load each time);
* ``scripts/spamlearnc`` (sh + curl) asking a real ``spamlearn serve``
  with one worker on a free loopback port;
* SpamAssassin's ``spamc`` (Debian's package; left out when it is not
  installed) asking the same service on its spamd port (``spamd_listen``).

It prints the wall time per message (median and 95th percentile), the
messages per second one delivery at a time, and checks that all wrote
the same tagged message for every one of them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from corpus import corpus_index  # noqa: E402
from serve_process import ServeProcess, clean_environment, free_port  # noqa: E402


def time_each(command: list[str], bodies: list[bytes],
              env: dict[str, str]) -> tuple[list[float], list[bytes]]:
    """Run ``command`` once per message, one after another: (seconds each, outputs)."""
    seconds, outputs = [], []
    for raw in bodies:
        start = time.perf_counter()
        result = subprocess.run(command, input=raw, capture_output=True, env=env, check=False)
        seconds.append(time.perf_counter() - start)
        if result.returncode != 0 or result.stderr:
            raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.decode()}")
        outputs.append(result.stdout)
    return seconds, outputs


def describe(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"| {name} | {1000 * statistics.median(seconds):.1f} | {1000 * p95:.1f} | "
            f"{len(seconds) / sum(seconds):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    index = corpus_index()
    paths = [index.parent / line.split()[1] for line in index.read_text().splitlines() if line.strip()]
    bodies = [p.read_bytes() for p in paths[: args.messages]]

    with tempfile.TemporaryDirectory(prefix="spamlearn-bench-") as tmp:
        base = Path(tmp)
        env = clean_environment(base / "home")
        config = base / "spamlearn.toml"
        config.write_text('[model]\npath = "model.joblib"\n')  # not there: the default model scores
        cli, by_cli = time_each([sys.executable, "-m", "spamlearn", "--config", str(config), "filter",
                                 "--exit-zero"], bodies, env)
        spamd_port = free_port()
        server = ServeProcess(config, base / "serve.log", env,
                              ["--workers", "1", "--spamd-listen", f"127.0.0.1:{spamd_port}"]).start()
        spamc = shutil.which("spamc")
        try:
            client, by_client = time_each(["sh", str(ROOT / "scripts" / "spamlearnc"), "-U", server.url],
                                          bodies, env)
            by_spamc: list[bytes] = []
            if spamc:
                spamc_times, by_spamc = time_each([spamc, "-d", "127.0.0.1", "-p", str(spamd_port)],
                                                  bodies, env)
        finally:
            server.stop()
    differ = sum(a != b for a, b in zip(by_cli, by_client)) + sum(a != b for a, b in zip(by_cli, by_spamc))
    print(f"{len(bodies)} SpamAssassin messages, one delivery at a time, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; tagged alike: {len(bodies) - differ} of {len(bodies)}")
    print("| program per message | median ms | p95 ms | messages/s |")
    print("| --- | --- | --- | --- |")
    print(describe("spamlearn filter --exit-zero", cli))
    print(describe("spamlearnc -> spamlearn serve", client))
    print(describe("spamc -> spamlearn serve (spamd_listen)", spamc_times) if spamc
          else "(spamc is not installed: apt-get install spamc)")
    if differ:
        raise SystemExit(f"{differ} messages were tagged differently")


if __name__ == "__main__":
    main()

"""How fast `spamlearn score` scores a folder of messages, and the eval loop.

    python scripts/bench_score.py [--jobs 2] [--repeat 3]

Unpacks the SpamAssassin corpus (scripts/corpus.py), then times
`spamlearn score --json <folders>` over all 6,046 messages with the default
model, with one worker and with one per core, as a user would run it
(including start-up); prints messages per second, and the CPU seconds the
run took (user + system, workers included): on a shared machine the wall
clock moves with the neighbours' load, the CPU time much less.  The online
evaluation's speed is printed by `spamlearn eval` itself.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import corpus_index  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    index = corpus_index()
    base = index.parent.parent
    folders = [str(base / name) for name in ("easy_ham", "easy_ham_2", "hard_ham", "spam", "spam_2")]
    n = sum(len(os.listdir(f)) for f in folders)
    print(f"{n} messages, {os.cpu_count()} cores")
    for jobs in (1, os.cpu_count() or 1):
        best = cpu = float("inf")
        for _ in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "spamlearn", "score", "--json", "--jobs", str(jobs),
                                   *folders], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = min(cpu, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr.decode())
            lines = proc.stdout.count(b"\n")
            assert lines == n, (lines, n)
            best = min(best, elapsed)
        print(f"spamlearn score --jobs {jobs}: {n / best:,.0f} messages/s "
              f"({best:.2f} s, best of {args.repeat}; {cpu:.2f} s CPU)")


if __name__ == "__main__":
    main()

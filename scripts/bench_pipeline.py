"""Where the online evaluation loop spends its time, stage by stage.

    PYTHONPATH=. python scripts/bench_pipeline.py [INDEX] [--repeat 3]

Reads every message of a TREC index into memory first (disk is not what we
measure), then runs the online loop (parse, tokenize, hash, score, learn)
with the default options and prints, per stage, the CPU seconds
(``time.process_time``: the machine is shared, so wall-clock time is noisy)
and messages per CPU second, best of ``--repeat`` runs, and the first
run's too: ``spamlearn eval`` makes one pass from a fresh process, with the
memo caches (URLs, addresses, HTML attributes) and imports still cold, so
the first run is the figure to compare with it (about 1 s more than the
best here on 2026-11-28).  The figure the issue asks for "parse + tokenize
+ score" is the sum of the first four.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

from spamlearn.classifier import Classifier
from spamlearn.evaluate import read_index
from spamlearn.message import parse_message

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import corpus_index  # noqa: E402


def run_once(raws, golds) -> dict[str, float]:
    clf = Classifier()
    tok, hasher, model = clf.tokenizer, clf.hasher, clf.model
    spent = dict.fromkeys(("parse", "tokenize", "hash", "score", "learn"), 0.0)
    clock = time.process_time
    for raw, is_spam in zip(raws, golds):
        t0 = clock()
        msg = parse_message(raw, clf.scan_limit)
        t1 = clock()
        tokens, n_text = tok.tokenize_split(msg)
        t2 = clock()
        indices, text = hasher.indices_split(tokens, n_text)
        t3 = clock()
        if model.n_learned_:
            model.score_indices(indices, text)
        t4 = clock()
        model.learn_indices(indices, is_spam)
        t5 = clock()
        spent["parse"] += t1 - t0
        spent["tokenize"] += t2 - t1
        spent["hash"] += t3 - t2
        spent["score"] += t4 - t3
        spent["learn"] += t5 - t4
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", nargs="?", default=None,
                        help="TREC index (default: the unpacked SpamAssassin corpus)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    entries = read_index(Path(args.index) if args.index else corpus_index())
    raws = [e.path.read_bytes() for e in entries]
    golds = [e.gold.value == "spam" for e in entries]
    best: dict[str, float] | None = None
    first: dict[str, float] | None = None
    for _ in range(args.repeat):
        gc.collect()
        spent = run_once(raws, golds)
        first = first or spent
        if best is None or sum(spent.values()) < sum(best.values()):
            best = spent
    n = len(raws)
    print(f"{'':9s} {'best':>12s} {'':>9s}  {'first pass':>12s}")
    for stage, seconds in best.items():
        print(f"{stage:9s} {seconds:7.2f} s CPU  {n / seconds if seconds else float('inf'):9,.0f} msg/s"
              f"  {first[stage]:7.2f} s CPU")
    front = best["parse"] + best["tokenize"] + best["hash"] + best["score"]
    print(f"parse+tokenize+score  {n / front:,.0f} msg/CPU-s;  "
          f"whole loop  {n / sum(best.values()):,.0f} msg/CPU-s"
          f"  (first pass {n / sum(first.values()):,.0f})")


if __name__ == "__main__":
    main()

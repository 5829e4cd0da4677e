"""Why spamlearn has no auto-learn: what learning its own verdicts does.

    PYTHONPATH=. python scripts/autolearn_experiment.py [--index INDEX] [--orders 5] [--seed 500 2000]

SpamAssassin (``bayes_auto_learn``) and Rspamd (``autolearn``) can learn a
message from the filter's own verdict when it is confident.  This runs the
TREC online protocol over a corpus (the unpacked SpamAssassin corpus by
default): the first N messages are learned with their true label (a user's
first corrections), and after that each message is scored, then

- ``gold``: learned with its true label (a user who keeps correcting:
  what ``spamlearn train`` and the sieve give);
- ``none``: not learned (the model stops at N);
- ``auto LO HI``: learned as spam if it scored at least HI, as ham below
  LO, otherwise not at all (auto-learn on the filter's own verdicts).

It prints (1-ROCA)%, lam%, ham and spam misclassified at the default
cutoffs (0.20 / 0.90), unsure %, each order's (ham, spam) errors at 0.5,
and, for auto-learn, how many messages it learned with the wrong label.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from spamlearn.classifier import Classifier, Label
from spamlearn.evaluate import OnlineResult, compute_figures, read_index
from spamlearn.message import parse_message

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import shuffled  # noqa: E402
from corpus import corpus_index  # noqa: E402

STRATEGIES = (("gold", 0.0, 0.0), ("none", 0.0, 0.0), ("auto", 0.01, 0.99), ("auto", 0.001, 0.999),
              ("auto", 0.20, 0.90))


def run(features: list, golds: list[bool], ids: list[str], first: int, strategy: tuple) -> dict:
    """One online pass; returns the figures and the auto-learned mistakes."""
    how, low, high = strategy
    clf = Classifier()
    n = len(features)
    scores, decisions, verdicts = np.full(n, 0.5), np.zeros(n), []
    mislearned = 0
    for i, ((indices, text), gold) in enumerate(zip(features, golds)):
        verdict = clf.score_indices(indices, text) if clf.model.n_learned_ else None
        if verdict is not None:
            scores[i], decisions[i] = verdict.spam_prob, verdict.decision
        verdicts.append(verdict.label if verdict else Label.UNSURE)
        if i < first or how == "gold":
            clf.learn_indices(indices, Label.SPAM if gold else Label.HAM)
        elif how == "auto" and verdict is not None and (verdict.spam_prob >= high or verdict.spam_prob < low):
            as_spam = verdict.spam_prob >= high
            clf.learn_indices(indices, Label.SPAM if as_spam else Label.HAM)
            mislearned += as_spam != gold
    gold_arr = np.array(golds)
    f = compute_figures(OnlineResult(ids, gold_arr.astype(np.int8), scores, decisions, verdicts, 1.0, n))
    return {"roca": f.roca_pct, "lam": f.lam_pct, "hm": f.ham_misclassified_pct,
            "sm": f.spam_misclassified_pct, "unsure": f.unsure_pct, "mislearned": mislearned,
            "errors": (int(((scores > 0.5) & ~gold_arr).sum()), int(((scores <= 0.5) & gold_arr).sum()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=None,
                        help="TREC index (default: the unpacked SpamAssassin corpus)")
    parser.add_argument("--orders", type=int, default=5, help="the index order plus N-1 seeded shuffles")
    parser.add_argument("--seed", type=int, nargs="+", default=[500, 2000],
                        help="messages learned with their true label first")
    args = parser.parse_args()
    entries = read_index(Path(args.index) if args.index else corpus_index())
    clf = Classifier()
    features = [clf.hasher.indices_split(*clf.tokenizer.tokenize_split(parse_message(e.path.read_bytes())))
                for e in entries]
    golds = [e.gold is Label.SPAM for e in entries]
    ids = [e.id for e in entries]
    for first in args.seed:
        for strategy in STRATEGIES:
            rows = [run(shuffled(features, s), shuffled(golds, s), shuffled(ids, s), first, strategy)
                    for s in range(args.orders)]
            mean = {k: float(np.mean([r[k] for r in rows])) for k in ("roca", "lam", "hm", "sm", "unsure")}
            name = strategy[0] if strategy[0] != "auto" else f"auto {strategy[1]} {strategy[2]}"
            print(f"first {first:5d} then {name:17s} (1-ROCA)% {mean['roca']:.4f}  lam% {mean['lam']:.3f}  "
                  f"hm {mean['hm']:.3f}%  sm {mean['sm']:.3f}%  unsure {mean['unsure']:.2f}%  "
                  f"errors {[r['errors'] for r in rows]}"
                  + (f"  learned wrongly {[r['mislearned'] for r in rows]}" if strategy[0] == "auto" else ""),
                  flush=True)


if __name__ == "__main__":
    main()

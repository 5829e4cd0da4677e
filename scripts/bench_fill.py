"""How a crowded feature space costs accuracy: the corpus hashed into fewer buckets.

    python scripts/bench_fill.py [--orders 5] [--bits 16 17 18 19 20 21 22] [--plot docs/fill.png]

Unpacks the SpamAssassin corpus (scripts/corpus.py) and runs the TREC online
protocol (scripts/ablation.py) at each model size, over the index order and
seeded shuffles; prints, per size, the share of buckets the corpus's tokens
use at the end and the mean (1-ROCA)% and lam%.  Fewer buckets for the same
tokens stand in for a model that has learned many more messages than this
corpus holds: what `spamlearn info` warns about past 25% (README, "A full
model").  With --plot, draws (1-ROCA)% against the share in use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import run, shuffled  # noqa: E402
from corpus import corpus_index  # noqa: E402

from spamlearn.classifier import Label  # noqa: E402
from spamlearn.evaluate import read_index  # noqa: E402
from spamlearn.message import parse_message  # noqa: E402
from spamlearn.modelstore import ModelStore  # noqa: E402


def measure(bits: list[int], orders: int) -> list[dict]:
    entries = read_index(corpus_index())
    parsed = [parse_message(e.path.read_bytes()) for e in entries]
    golds = [e.gold is Label.SPAM for e in entries]
    ids = [e.id for e in entries]
    rows = []
    for b in bits:
        runs = [run(shuffled(parsed, seed), shuffled(golds, seed), shuffled(ids, seed), f"nf={b}")
                for seed in range(orders)]
        rows.append({"bits": b, "used_pct": 100 * runs[0]["buckets"] / 2**b,
                     "roca": float(np.mean([r["roca"] for r in runs])),
                     "lam": float(np.mean([r["lam"] for r in runs]))})
        print(f"2**{b:<3} {rows[-1]['used_pct']:5.1f}% of buckets used   (1-ROCA)% {rows[-1]['roca']:.4f}"
              f"   lam% {rows[-1]['lam']:.3f}", flush=True)
    return rows


def plot(rows: list[dict], path: Path, orders: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    used = [r["used_pct"] for r in rows]
    roca = [r["roca"] for r in rows]
    ax.plot(used, roca, marker="o", color="#1f5f9f")
    for i, r in enumerate(rows):      # labels below and above in turn: the small sizes sit close
        ax.annotate(f"2**{r['bits']}", (r["used_pct"], r["roca"]), textcoords="offset points",
                    xytext=(4, -13 if i % 2 else 7), fontsize=8)
    ax.axvline(ModelStore.CROWDED_PCT, color="#b03030", linestyle="--", linewidth=1)
    ax.text(ModelStore.CROWDED_PCT + 1, max(roca) * 0.95, "spamlearn info warns", color="#b03030", fontsize=8)
    ax.set_xlabel("feature buckets in use at the end (%)")
    ax.set_ylabel("(1-ROCA)%, lower is better")
    ax.set_title(f"A crowded model: the SpamAssassin corpus in fewer buckets\n(mean of {orders} orders)",
                 fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5)
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 17, 18, 19, 20, 21, 22])
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    rows = measure(args.bits, args.orders)
    if args.plot:
        plot(rows, args.plot, args.orders)


if __name__ == "__main__":
    main()

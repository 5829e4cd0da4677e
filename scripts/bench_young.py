"""What a young model says: verdicts after learning the first N of each class.

    python scripts/bench_young.py [--sizes 10 20 50 200] [--test 600]

Learns the first N spam (``spam/``) and N ham (``easy_ham/``) of the
SpamAssassin corpus's 2002 half into an empty model, then scores the first
``--test`` spam (``spam_2/``) and ham (``easy_ham_2/``) of its 2003 half and
prints how many of each were called spam, unsure and ham at the default
cutoffs: how a trained model behaves right after it takes over from the
packaged one (``min_messages``).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import corpus_index  # noqa: E402

from spamlearn.classifier import Classifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50, 200])
    parser.add_argument("--test", type=int, default=600)
    args = parser.parse_args()
    root = corpus_index().parent.parent

    def first(folder: str, n: int) -> list[bytes]:
        return [p.read_bytes() for p in sorted((root / folder).iterdir())[:n] if p.is_file()]

    test = {"spam": first("spam_2", args.test), "ham": first("easy_ham_2", args.test)}
    print("learned  spam: spam/unsure/ham   ham: ham/unsure/spam")
    for n in args.sizes:
        classifier = Classifier(n_features=2**21)
        for raw in first("spam", n):
            classifier.learn(raw, "spam")
        for raw in first("easy_ham", n):
            classifier.learn(raw, "ham")
        said = {gold: collections.Counter(classifier.score(raw).label.value for raw in messages)
                for gold, messages in test.items()}
        spam, ham = said["spam"], said["ham"]
        print(f"{n:7d}  {spam['spam']:4d} / {spam['unsure']:4d} / {spam['ham']:4d}"
              f"      {ham['ham']:4d} / {ham['unsure']:4d} / {ham['spam']:4d}")


if __name__ == "__main__":
    main()

"""Rebuild models/default.joblib from the SpamAssassin public corpus.

    python scripts/build_default_model.py            # writes models/default.joblib

Learns every message of the corpus (in its index order) into a fresh
model with the default tokenizer and model parameters, then prints the
figures that go in models/MODEL_CARD.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import ROOT, corpus_index  # noqa: E402

from spamlearn.classifier import Classifier  # noqa: E402
from spamlearn.evaluate import read_index  # noqa: E402
from spamlearn.store import save_classifier  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "models" / "default.joblib"
    entries = read_index(corpus_index())
    classifier = Classifier()
    start = time.perf_counter()
    for entry in entries:
        classifier.learn(entry.path.read_bytes(), entry.gold)
    classifier.revision = 1
    save_classifier(classifier, out)
    print(f"learned {classifier.n_spam} spam and {classifier.n_ham} ham in "
          f"{time.perf_counter() - start:.1f} s; wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

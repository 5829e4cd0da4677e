"""The README's case against auto-learn, measured again on the real corpus.

``scripts/autolearn_experiment.py`` learns the first messages with their
true labels, then either nothing or the filter's own confident verdicts;
the README says that the second does worse than the first.  This runs it
(index order, 500 messages first) and checks that it still does.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"first\s+(\d+) then (.+?)\s+\(1-ROCA\)% ([\d.]+)\s+lam% ([\d.]+)"
                 r"\s+hm ([\d.]+)%\s+sm ([\d.]+)%")


def test_learning_its_own_verdicts_does_worse_than_learning_nothing(spamassassin_index):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "autolearn_experiment.py"),
                           "--index", str(spamassassin_index), "--orders", "1", "--seed", "500"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    rows = {m[2]: {"roca": float(m[3]), "sm": float(m[6])} for m in ROW.finditer(proc.stdout)}
    assert set(rows) == {"gold", "none", "auto 0.01 0.99", "auto 0.001 0.999", "auto 0.2 0.9"}, proc.stdout
    assert rows["gold"]["roca"] < rows["none"]["roca"]
    for name in ("auto 0.01 0.99", "auto 0.001 0.999", "auto 0.2 0.9"):
        assert rows[name]["roca"] > rows["none"]["roca"], (name, proc.stdout)
        assert rows[name]["sm"] > rows["none"]["sm"], (name, proc.stdout)
    assert re.search(r"learned wrongly \[[1-9]", proc.stdout), proc.stdout

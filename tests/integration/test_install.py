"""An installed spamlearn finds its default model wherever pip put it.

pip writes the model (a data file) under the prefix it installs into, which
is not always ``sys.prefix``: ``--user``, ``--prefix``, and Debian's own pip
(/usr/local while sys.prefix is /usr).  This installs the project for real
into a throw-away prefix and scores from outside the source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_prefix_install_scores_with_its_own_default_model(tmp_path):
    # --ignore-installed: without it pip first uninstalls the spamlearn the
    # tests run from (an editable install) to put this one in its place.
    prefix = tmp_path / "prefix"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--ignore-installed", "--prefix", str(prefix), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    site = prefix / Path(sysconfig.get_path("purelib", vars={"base": ""}).lstrip("/"))
    assert (site / "spamlearn").is_dir(), sorted(str(p) for p in prefix.rglob("spamlearn"))[:5]
    # pyproject.toml names it, but no file was there to ship (a helper's review).
    assert (site / "spamlearn" / "py.typed").is_file()
    config = tmp_path / "empty.toml"
    config.write_text("")
    env = {**os.environ, "PYTHONPATH": str(site), "SPAMLEARN_MODEL": str(tmp_path / "none" / "m.joblib"),
           "HOME": str(tmp_path)}
    env.pop("SPAMLEARN_DEFAULT_MODEL", None)
    command = [sys.executable, "-m", "spamlearn", "--config", str(config)]
    info = subprocess.run(command + ["info"], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert info.returncode == 0, info.stdout + info.stderr
    assert str(prefix / "share" / "spamlearn" / "models" / "default.joblib") in info.stdout
    scored = subprocess.run(command + ["score", str(ROOT / "tests" / "fixtures" / "sample-spam.eml")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert scored.stdout.split("\t")[1] == "spam"

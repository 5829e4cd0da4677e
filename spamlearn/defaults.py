"""Where the packaged default model is, and which model answers a score.

The default model (trained on the SpamAssassin public corpus, see
``models/MODEL_CARD.md``) lets spamlearn score out of the box.  A trained
model takes over once it has learned ``Settings.min_messages`` of each
class; a user's own model takes over from the shared one the same way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .classifier import Classifier
from .config import Settings
from .errors import ModelFileError
from .store import load_classifier, read_header

__all__ = ["default_model_path", "choose_model_path", "load_scoring_classifier"]

DEFAULT_MODEL_NAME = "default.joblib"


def _candidates(package_dir: Path) -> list[Path]:
    """Where the default model may be, for the package installed at ``package_dir``.

    pip writes data files under the prefix it installed into, which is not
    always ``sys.prefix``: ``pip install --user`` (~/.local), ``--prefix``,
    and Debian's own pip (/usr/local, while sys.prefix is /usr) put the
    package in <prefix>/lib/pythonX.Y/site-packages and the model in
    <prefix>/share, so the package's own place names the prefix.
    """
    share = Path("share") / "spamlearn" / "models" / DEFAULT_MODEL_NAME
    checkout = package_dir.parent
    candidates = [checkout / "models" / DEFAULT_MODEL_NAME] if (checkout / "pyproject.toml").is_file() else []
    if len(package_dir.parents) >= 4 and package_dir.parents[2].name == "lib":
        candidates.append(package_dir.parents[3] / share)
    candidates.append(Path(sys.prefix) / share)
    return candidates


def default_model_path() -> Path:
    """The packaged default model: in a source checkout, or under <prefix>/share."""
    override = os.environ.get("SPAMLEARN_DEFAULT_MODEL")
    if override:
        return Path(override)
    for candidate in _candidates(Path(__file__).resolve().parent):
        if candidate.is_file():
            return candidate
    raise ModelFileError("the packaged default model is missing (reinstall spamlearn, or run "
                         "scripts/build_default_model.py)")


def _ready(path: Path, min_messages: int) -> bool:
    # Not there yet: not trained yet.  Anything else that is not a readable
    # model (a folder, a FIFO, a corrupt file) is an error, as it is for
    # learn and info; a folder fell back to the default model unnoticed.
    try:
        if not path.exists():
            return False
    except OSError as exc:     # a folder on the way this user may not enter
        raise ModelFileError(f"cannot read model {path}: {exc.strerror or exc} (the user "
                             f"scoring mail must be able to read the model's folder)") from None
    header = read_header(path)
    return header["n_spam"] >= max(min_messages, 1) and header["n_ham"] >= max(min_messages, 1)


def choose_model_path(settings: Settings, user: str | None = None,
                      explicit: Path | None = None) -> Path:
    """The model that scores for ``user``.

    An ``explicit`` path (``--model``) is used as it is.  Otherwise: the
    user's own model once ready, else the shared model once ready, else
    the packaged default.
    """
    if explicit is not None:
        return explicit
    if user and settings.has_own_model(user):
        own = settings.user_model_path(user)
        if _ready(own, settings.min_messages):
            return own
    if _ready(settings.model_path, settings.min_messages):
        return settings.model_path
    return default_model_path()


def load_scoring_classifier(settings: Settings, user: str | None = None,
                            explicit: Path | None = None) -> tuple[Classifier, Path]:
    """The classifier that scores for ``user`` (``choose_model_path``), with
    the settings' cutoffs and scan limit, and the path it was loaded from."""
    path = choose_model_path(settings, user, explicit)
    classifier = load_classifier(path, ham_cutoff=settings.ham_cutoff,
                                 spam_cutoff=settings.spam_cutoff, scan_limit=settings.scan_limit)
    return classifier, path

"""spamlearn: a trainable Bayesian spam classifier for self-hosted mail.

The public surface::

    from spamlearn import Classifier, Label, Verdict, tokenize
    clf = Classifier()
    clf.learn(raw_spam, "spam"); clf.learn(raw_ham, "ham")
    clf.score(raw).label   # Label.HAM / Label.UNSURE / Label.SPAM

``spamlearn.modelstore.ModelStore`` adds a model file, its lock and the
ledger of learned messages (learning through it counts each message once).
The packaged default model loads through two submodules, which a plain
``import spamlearn`` does not import:

>>> from spamlearn.defaults import default_model_path
>>> from spamlearn.store import load_classifier
>>> clf = load_classifier(default_model_path())
>>> clf.n_spam > 0 and clf.n_ham > 0
True

Messages are bytes, bytearray or memoryview, or a ``str``, taken as its
UTF-8 encoding (``spamlearn.message.message_bytes``).
"""

__version__ = "0.3.2"

from typing import TYPE_CHECKING  # noqa: E402

from .errors import (  # noqa: E402
    ConfigError,
    ImapAuthError,
    ImapConnectionError,
    ImapError,
    ImapPassTimeoutError,
    ImapStateError,
    ImapStoppedError,
    LedgerError,
    MessageError,
    ModelError,
    ModelFileError,
    NotFittedError,
    SpamlearnError,
    StoreBusyError,
)
from .message import ParsedMessage, message_digest, parse_message  # noqa: E402
from .tokenizer import Tokenizer, TokenizerOptions, tokenize  # noqa: E402

if TYPE_CHECKING:
    # What __getattr__ below loads on first use, named for type checkers:
    # without these, mypy typed ``from spamlearn import Classifier`` as the
    # untyped __getattr__'s Any, so a user's script went unchecked.
    from .classifier import Classifier, Clue, Label, Verdict
    from .features import TokenHasher
    from .model import ChiSquareNB
    from .vectorizer import MessageVectorizer


def __getattr__(name: str):
    # What needs numpy loads on first use too: ``spamlearn.cli`` must be
    # able to limit numpy's threads before numpy is imported (see there).
    if name in ("Classifier", "Clue", "Label", "Verdict"):
        from . import classifier

        return getattr(classifier, name)
    if name == "TokenHasher":
        from .features import TokenHasher

        return TokenHasher
    # The scikit-learn faces load on first use: scoring and the command
    # line never import scikit-learn (1.4 s of start-up here).
    if name == "ChiSquareNB":
        from .model import ChiSquareNB

        return ChiSquareNB
    if name == "MessageVectorizer":
        from .vectorizer import MessageVectorizer

        return MessageVectorizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "Classifier", "Clue", "Label", "Verdict",
    "ChiSquareNB", "MessageVectorizer", "TokenHasher",
    "ParsedMessage", "parse_message", "message_digest",
    "Tokenizer", "TokenizerOptions", "tokenize",
    "SpamlearnError", "MessageError", "ModelError", "NotFittedError", "ModelFileError",
    "LedgerError", "StoreBusyError", "ConfigError",
    "ImapError", "ImapConnectionError", "ImapPassTimeoutError", "ImapAuthError", "ImapStateError",
    "ImapStoppedError",
]

"""Model files: joblib, atomic replace, versioned, checked on load.

A model file holds only plain data (a dict of numbers, strings and numpy
arrays), never pickled spamlearn or scikit-learn objects, so it loads across
library versions.  The counts are stored sparsely (the nonzero buckets), so
the file is a fraction of the in-memory size.

A model file is a pickle, but it is read with an unpickler that refuses
every class except the three such a file holds (numpy's ndarray and dtype,
joblib's array wrapper): a crafted file -- in a backup archive from
elsewhere, say -- is reported as not a model file instead of running code.
"""

from __future__ import annotations

import dataclasses
import errno
import inspect
import io
import os
import pickle
import tempfile
import time
import zlib
from pathlib import Path

import joblib
import numpy as np
from joblib.numpy_pickle import NumpyUnpickler

from . import __version__
from .classifier import Classifier
from .config import ledger_path_for, model_file
from .counts import BayesCounts
from .errors import ModelFileError
from .features import HASH_NAME, MAX_BUCKETS
from .regularfile import NotRegularFileError, hand_to_folder_owner, make_folders, new_file_mode, open_regular
from .tokenizer import TokenizerOptions

__all__ = ["FORMAT", "FORMAT_VERSION", "save_classifier", "load_classifier", "read_header"]

FORMAT = "spamlearn-model"
#: 2 (2026-11-28): tokens hashed with CRC-32, named in the file's "hash"
#: field (spamlearn.features).  Version 1 files hashed with BLAKE2b: their
#: buckets mean other tokens, so they are refused, not misread.
FORMAT_VERSION = 2
_HASH_OF_VERSION = {1: "blake2b"}



def _to_dict(classifier: Classifier) -> dict:
    model = classifier.model
    nonzero = np.flatnonzero((model.spam_count_ > 0) | (model.ham_count_ > 0)).astype(np.uint32)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spamlearn_version": __version__,
        "numpy_version": np.__version__,
        "saved_at": time.time(),
        "trained_at": classifier.trained_at,
        "revision": classifier.revision,
        "n_features": model.n_features_in_,
        "hash": HASH_NAME,
        "model_params": {k: getattr(model, k) for k in BayesCounts.PARAMS},
        "tokenizer": dataclasses.asdict(classifier.tokenizer.options),
        "n_spam": model.n_spam_,
        "n_ham": model.n_ham_,
        "index": nonzero,
        "spam": model.spam_count_[nonzero],
        "ham": model.ham_count_[nonzero],
    }


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename stands
    finally:
        os.close(fd)


def save_classifier(classifier: Classifier, path: str | os.PathLike[str], *,
                    with_ledger: bool = False) -> None:
    """Write ``classifier`` to ``path`` atomically (temp file, fsync, rename).

    The model file alone, without a lock: for a model only the caller
    writes.  A model that a ledger goes with (``<stem>.ledger`` beside it:
    the command line, the IMAP trainer, the sieve or the service learned
    into it) is changed through ``spamlearn.modelstore.ModelStore``, which
    writes both under the model's lock.

    Parameters
    ----------
    with_ledger : bool, default=False
        The caller has just written the ledger this model goes with
        (``ModelStore`` does); without it, a model file with a ledger
        beside it is refused.

    Raises
    ------
    ModelFileError
        ``path`` has a ledger beside it (and ``with_ledger`` is False);
        the folder is not writable, the disk is full, ... -- the old file,
        if any, is then left untouched.
    """
    path = Path(path)
    ledger = ledger_path_for(model_file(path))
    if not with_ledger and os.path.exists(ledger):
        # An embedding filter's learn-and-save left the ledger short of the
        # model for good: `info --check` exit 74, the message never to be
        # forgotten, and what the command line learned meanwhile lost to
        # the older copy saved over it (a helper's review).
        raise ModelFileError(f"{path} has a ledger ({ledger}): save_classifier would leave it "
                             f"disagreeing with the model; learn through "
                             f"spamlearn.modelstore.ModelStore, which changes both")
    if classifier.model.n_features_in_ > _MAX_FILE_FEATURES:
        # Refused before anything is written: the file would be one no
        # load accepts (a library's resize to 2**29 replaced a working model
        # with it, a helper's review).
        raise ModelFileError(f"cannot write {path}: {classifier.model.n_features_in_} buckets is more "
                             f"than a model file may hold (2**28)")
    data = _to_dict(classifier)
    tmp_name = None
    try:
        make_folders(path.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            # zlib level 3: 6x smaller than raw for a trained model, and
            # loads in a few milliseconds.
            joblib.dump(data, fh, compress=("zlib", 3))
            fh.flush()
            os.fsync(fh.fileno())
            # Mode and owner by descriptor: the temp file's name is in a
            # folder the mail user can write, so it could be swapped for a
            # link before a chmod or chown by name.
            if path.exists():
                replaced = path.stat()
                os.fchmod(fh.fileno(), replaced.st_mode & 0o777)
                if os.geteuid() == 0 and replaced.st_uid != 0:
                    os.fchown(fh.fileno(), replaced.st_uid, replaced.st_gid)     # root learning by hand
            else:
                os.fchmod(fh.fileno(), new_file_mode())
                hand_to_folder_owner(fh.fileno(), path.parent)
        os.replace(tmp_name, path)
        tmp_name = None
        fsync_dir(path.parent)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = f"{reason} (is the folder writable by this user?)"
        raise ModelFileError(f"cannot write model file {path}: {reason}") from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


class _PlainDataUnpickler(NumpyUnpickler):
    """joblib's unpickler, refusing every class a model file does not hold."""

    _ALLOWED = frozenset({("joblib.numpy_pickle", "NumpyArrayWrapper"), ("numpy", "dtype"),
                          ("numpy", "ndarray")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"a model file holds no {module}.{name}")
        return super().find_class(module, name)


# joblib 1.4 added ensure_native_byte_order to NumpyUnpickler.__init__.
_UNPICKLER_TAKES_BYTE_ORDER = ("ensure_native_byte_order"
                               in inspect.signature(NumpyUnpickler.__init__).parameters)
# A model file's pickle, decompressed, is at most this big (2**24 buckets
# all used: 256 MB): a few bytes of zlib must not inflate to all memory.
_MAX_PICKLE_BYTES = 1 << 30


def _load_plain_data(fh, name: str) -> object:
    """``joblib.load`` for what ``save_classifier`` writes (zlib or plain),
    with ``_PlainDataUnpickler``."""
    head = fh.read(1)
    fh.seek(0)
    if head == b"\x78":
        inflate = zlib.decompressobj()
        pickled = io.BytesIO()
        while chunk := fh.read(1 << 20):
            pickled.write(inflate.decompress(chunk, _MAX_PICKLE_BYTES + 1 - pickled.tell()))
            if pickled.tell() > _MAX_PICKLE_BYTES or inflate.unconsumed_tail:
                raise ValueError("decompresses to more than a model file can hold")
        pickled.write(inflate.flush())
        if not inflate.eof:
            raise EOFError("compressed data ends early")
        pickled.seek(0)
        fh = pickled
    kwargs = {"ensure_native_byte_order": True} if _UNPICKLER_TAKES_BYTE_ORDER else {}
    return _PlainDataUnpickler(name, fh, mmap_mode=None, **kwargs).load()


def read_header(path: str | os.PathLike[str], content: bytes | None = None) -> dict:
    """Load a model file's dict and check its format; no counts built.
    ``content``: the file's bytes, already read (``path`` then only names it)."""
    path = Path(path)
    try:
        with open_regular(path) if content is None else io.BytesIO(content) as fh:
            head = fh.read(2)
            fh.seek(0)
            if not head:
                raise ModelFileError(f"model file {path} is empty")
            # joblib writes a zlib stream (0x78) or a plain pickle (0x80).
            if head[0] not in (0x78, 0x80):
                raise ModelFileError(f"{path} is not a spamlearn model file")
            data = _load_plain_data(fh, str(path))
    except FileNotFoundError as exc:
        raise ModelFileError(f"no model file at {path}") from exc
    except IsADirectoryError as exc:
        raise ModelFileError(f"{path} is a folder, not a model file") from exc
    except NotRegularFileError as exc:
        raise ModelFileError(f"{path} is {exc.strerror}, not a model file") from exc
    except PermissionError as exc:
        raise ModelFileError(f"cannot read model file {path}: permission denied") from exc
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENAMETOOLONG):
            raise ModelFileError(f"model file {path} is truncated or corrupt ({type(exc).__name__})") from exc
        # The path names no file (a loop of links, a file where a folder
        # should be): it was "truncated or corrupt (OSError)", as if there
        # were a damaged model to restore.
        raise ModelFileError(f"no model file at {path} ({exc.strerror})") from exc
    except ModelFileError:
        raise
    except (EOFError, pickle.UnpicklingError, zlib.error, ValueError, KeyError, IndexError,
            AttributeError, ImportError, TypeError, MemoryError) as exc:
        # The kind of failure says something (EOFError: cut short); zlib's
        # own exception class is just called "error".
        kind = "compressed data damaged" if isinstance(exc, zlib.error) else type(exc).__name__
        raise ModelFileError(f"model file {path} is truncated or corrupt ({kind})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a spamlearn model file")
    version = data.get("format_version")
    if version in _HASH_OF_VERSION:
        raise ModelFileError(
            f"model file {path} has format version {version!r}, whose tokens were hashed with "
            f"{_HASH_OF_VERSION[version]}; this spamlearn ({__version__}) hashes with {HASH_NAME} "
            f"and reads version {FORMAT_VERSION}: learn the messages again into a new model")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"model file {path} has format version {version!r}; this spamlearn "
            f"({__version__}) reads version {FORMAT_VERSION}"
        )
    if data.get("hash") != HASH_NAME:
        raise ModelFileError(
            f"model file {path} hashes tokens with {data.get('hash')!r}; this spamlearn "
            f"({__version__}) hashes with {HASH_NAME!r}: learn the messages again into a new model")
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise ModelFileError(f"model file {path} is corrupt (no {', '.join(missing)})")
    problem = _field_problem(data)
    if problem:
        raise ModelFileError(f"model file {path} is corrupt ({problem})")
    return data


#: The largest model a file may describe.
_MAX_FILE_FEATURES = MAX_BUCKETS


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _field_problem(data: dict) -> str | None:
    """What is wrong with a model dict's values, or None.

    A file can have the right keys and still not be a model a learner may
    save over: a wrong type, a size that would take all memory, counts
    that are negative, not whole, or more than the messages learned.
    """
    n_features, n_spam, n_ham = data["n_features"], data["n_spam"], data["n_ham"]
    if not _is_int(n_features) or not 1 <= n_features <= _MAX_FILE_FEATURES:
        return f"n_features is {n_features!r}"
    for name, count in (("n_spam", n_spam), ("n_ham", n_ham)):
        if not _is_int(count) or count < 0:
            return f"{name} is {count!r}"
    if not _is_int(data.get("revision", 0)) or data.get("revision", 0) < 0:
        return f"revision is {data.get('revision')!r}"
    trained_at = data.get("trained_at")
    if trained_at is not None and not (isinstance(trained_at, (int, float)) and 0 <= trained_at < 1e11):
        return f"trained_at is {trained_at!r}"
    if not isinstance(data["model_params"], dict) or not isinstance(data["tokenizer"], dict):
        return "its parameters are not tables"
    defaults = {f.name: f.default for f in dataclasses.fields(TokenizerOptions)}
    for name, value in data["tokenizer"].items():
        default = defaults.get(name, value)
        if name == "word_pairs":
            ok = isinstance(value, (bool, str))
        else:
            ok = type(value) is type(default)
        if not ok:
            return f"tokenizer option {name} is {value!r}"
    index, spam, ham = (np.asarray(data[key]) for key in ("index", "spam", "ham"))
    if index.ndim != 1 or spam.shape != index.shape or ham.shape != index.shape:
        return "its count arrays do not line up"
    for name, array in (("index", index), ("spam", spam), ("ham", ham)):
        if array.dtype.kind not in "iu":
            return f"{name} holds {array.dtype} values"
    if len(index):
        if index[0] < 0 or index[-1] >= n_features or not (np.diff(index.astype(np.int64)) > 0).all():
            return "its bucket list is out of range or out of order"
        if spam.min() < 0 or ham.min() < 0:
            return "negative counts"
        if spam.max() > n_spam or ham.max() > n_ham:
            return "a token counted in more messages than were learned"
    return None


#: What every reader of a model file relies on (the rest has defaults).
# Tokenizer options added after model files were first written, and the
# value that means "as before": a file without one was trained without it
# and must go on tokenizing that way, not take up today's default (its
# counts would no longer match its tokens).
_OPTIONS_BEFORE_THEY_EXISTED = {
    "cjk_bigrams": False,
    "header_value_words": 20,
    "date_zone": False,
    "message_id_shape": False,
    "from_address": False,
    "content_type_raw": False,
    "relay_helo": False,
    "subject_space_run": False,
    "mailer_id_shape": False,
    "date_zone_invalid": False,
}

_REQUIRED_KEYS = ("n_features", "index", "spam", "ham", "n_spam", "n_ham", "model_params", "tokenizer")


def load_classifier(path: str | os.PathLike[str], *, ham_cutoff: float = 0.20, spam_cutoff: float = 0.90,
                    scan_limit: int = 512_000, content: bytes | None = None) -> Classifier:
    """Load a model file into a ``Classifier`` (from ``content``, its bytes,
    if the caller has read them).

    Raises
    ------
    ModelFileError
        Missing, truncated, foreign, or another format version.
    """
    data = read_header(path, content)
    try:
        n_features = int(data["n_features"])
        # A parameter missing from an older file takes today's default: they
        # only shape scoring, never what the counts mean.
        unknown = set(data["model_params"]) - set(BayesCounts.PARAMS)
        if unknown:
            raise ModelFileError(
                f"model file {path} uses model parameters this spamlearn ({__version__}) does not "
                f"know: {', '.join(sorted(unknown))}; it was written by spamlearn "
                f"{data.get('spamlearn_version', '?')}: read it with that version or a later one, "
                f"or restore a backup made before")
        model = BayesCounts(**data["model_params"]).init_empty(n_features)
        index = np.asarray(data["index"], dtype=np.int64)
        model.spam_count_[index] = data["spam"]
        model.ham_count_[index] = data["ham"]
        model.n_spam_ = int(data["n_spam"])
        model.n_ham_ = int(data["n_ham"])
        known = {f.name for f in dataclasses.fields(TokenizerOptions)}
        unknown = set(data["tokenizer"]) - known
        if unknown:
            raise ModelFileError(
                f"model file {path} uses tokenizer options this spamlearn ({__version__}) does not "
                f"know: {', '.join(sorted(unknown))}; it was written by spamlearn "
                f"{data.get('spamlearn_version', '?')}: read it with that version or a later one, "
                f"or restore a backup made before")
        options = TokenizerOptions(**{**_OPTIONS_BEFORE_THEY_EXISTED, **data["tokenizer"]})
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFileError(f"model file {path} is corrupt ({type(exc).__name__}: {exc})") from exc
    classifier = Classifier(model, tokenizer_options=options, ham_cutoff=ham_cutoff,
                            spam_cutoff=spam_cutoff, scan_limit=scan_limit)
    classifier.revision = int(data.get("revision", 0))
    classifier.trained_at = data.get("trained_at")
    return classifier

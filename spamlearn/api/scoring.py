"""Which model scores a request, kept in memory and reloaded when its file changes.

The choice is ``spamlearn.defaults.choose_model_path``'s: a user's own
model once it has ``min_messages`` of each class, else the shared model once
ready, else the packaged default.  It is made here from models already in
memory rather than by calling ``load_scoring_classifier`` per request,
because that reads every candidate's file (10-20 ms each) where a request
has 1-5 ms to spend.

Hot reload: at most every ``reload_interval`` a request ``stat``s the
model file; when ``(st_ino, st_mtime_ns, st_size)`` changed, the new file is
loaded in a worker thread while requests go on with the old classifier, and
the reference is swapped when the load is complete; the request that found
the change waits up to ``RELOAD_WAIT`` for it, so that a retrain is seen at
once by the next message scored.  Model files are only
ever replaced by rename (``spamlearn.store.save_classifier``), so a load
sees either the old file or the new one, never half of one.  A file that
fails to load is reported (metrics, ``/healthz``, the log) and the old
model goes on answering until a good file appears.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..classifier import Classifier
from ..config import Settings, model_file
from ..defaults import default_model_path
from ..errors import ModelFileError
from ..metrics import Metrics
from ..regularfile import NotRegularFileError, open_regular
from ..store import load_classifier

#: How long the request that finds a model file changed waits for the new
#: version to load before the old one answers it.
RELOAD_WAIT = 0.25

__all__ = ["LoadedModel", "ScoringModels", "ModelKind"]

log = logging.getLogger("spamlearn.serve")

FileKey = tuple[int, int, int]


class ModelKind:
    USER = "user"
    SHARED = "shared"
    DEFAULT = "default"


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedModel:
    """A classifier in memory and what identifies its file."""

    classifier: Classifier
    path: Path
    kind: str
    file_key: FileKey
    digest: str
    loaded_at: float

    def identity(self) -> dict[str, Any]:
        clf = self.classifier
        return {"name": self.path.name, "kind": self.kind, "revision": clf.revision,
                "trained_at": clf.trained_at, "digest": self.digest,
                "n_spam": clf.n_spam, "n_ham": clf.n_ham}


def _file_key(path: Path) -> FileKey | None:
    """The file's identity; None when there is no file, nor a folder for
    it (a path through a regular file), as ``spamlearn score`` sees it.

    Raises
    ------
    ModelFileError
        Its folder cannot be entered (or another stat error): it escaped
        as a 500 and a traceback for every request it scored (a folder of
        per-user models the service's user could not enter; a helper's
        review).
    """
    try:
        return _key_of(os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ModelFileError(f"cannot read model {path}: {exc.strerror or exc} (the service's "
                             f"user must be able to read the model's folder)") from None


def _key_of(st: os.stat_result) -> FileKey:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def load_model(path: Path, kind: str, settings: Settings) -> LoadedModel:
    """Load ``path`` with its identity; blocking (run it in a thread).

    The file is read once, through one descriptor: its identity, the digest
    of its bytes (which an admin can compare with ``sha256sum``) and the
    counts all describe that one file, however often learners replace the
    name meanwhile.  (It was read twice and compared, and under a commit
    every 10-20 ms five reads in a row met a new file: an ERROR "kept
    changing" and a failed-reload count for a file that was fine; a
    helper's review.)
    """
    try:
        with open_regular(path) as fh:
            st = os.fstat(fh.fileno())
            content = fh.read()
    except FileNotFoundError:
        raise ModelFileError(f"no model file at {path}") from None
    except NotRegularFileError as exc:
        raise ModelFileError(f"{path} is {exc.strerror}, not a model file") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror}") from exc
    digest = hashlib.sha256(content).hexdigest()[:12]
    classifier = load_classifier(path, ham_cutoff=settings.ham_cutoff, spam_cutoff=settings.spam_cutoff,
                                 scan_limit=settings.scan_limit, content=content)
    del content
    if kind != ModelKind.USER:
        # The service never learns into a loaded model (learning goes
        # through the store and comes back as a reload), so f(w) can be
        # a table lookup: ~50 ms and 8 bytes a bucket (16 MB for the
        # default 2**21) once, against 0.03-0.2 ms of CPU per message
        # (measured 2026-11-28, 2,000 SpamAssassin messages).  Not for
        # per-user models: up to max_user_models of them, each would
        # double its memory for the traffic of one mailbox.
        classifier.model.freeze_scoring()
    return LoadedModel(classifier, path, kind, _key_of(st), digest, time.time())


class _Slot:
    """One model file watched for changes."""

    __slots__ = ("path", "kind", "model", "checked_at", "failed_key", "error", "loading")

    def __init__(self, path: Path, kind: str):
        self.path = path
        self.kind = kind
        self.model: LoadedModel | None = None
        self.checked_at = float("-inf")
        self.failed_key: FileKey | None = None
        self.error: str | None = None
        self.loading: asyncio.Task[None] | None = None


class ScoringModels:
    """The models of one worker, by file path; all methods run on its event loop.

    Parameters
    ----------
    settings : Settings
    reload_interval : float
        Seconds between ``stat`` calls per model file.
    max_user_models : int
        Per-user models kept in memory; the least recently used go first.
    metrics : Metrics
    """

    def __init__(self, settings: Settings, *, reload_interval: float, max_user_models: int,
                 metrics: Metrics, exact_model: bool = False):
        self.settings = settings
        #: ``spamlearn serve --model FILE``: FILE scores every request, trained
        #: or not, as ``--model`` does for ``spamlearn score`` (no fallback).
        self.exact_model = exact_model
        self.reload_interval = reload_interval
        self.max_user_models = max_user_models
        self.metrics = metrics
        self._slots: dict[Path, _Slot] = {}
        self._user_slots: collections.OrderedDict[Path, _Slot] = collections.OrderedDict()
        self._default_path: Path | None = None

    # -- choice -------------------------------------------------------------------------
    def _ready(self, model: LoadedModel) -> bool:
        if model.kind == ModelKind.DEFAULT or self.exact_model:
            return True
        need = max(self.settings.min_messages, 1)
        return model.classifier.n_spam >= need and model.classifier.n_ham >= need

    def _candidates(self, user: str | None) -> list[tuple[Path, str]]:
        if self.exact_model:
            return [(self.settings.model_path, ModelKind.SHARED)]
        out = []
        if user and self.settings.has_own_model(user):
            out.append((self.settings.user_model_path(user), ModelKind.USER))
        out.append((self.settings.model_path, ModelKind.SHARED))
        if self._default_path is None:
            self._default_path = default_model_path()
        out.append((self._default_path, ModelKind.DEFAULT))
        return out

    async def for_user(self, user: str | None = None) -> LoadedModel:
        """The model that scores for ``user`` (None: the shared one or the default).

        Raises
        ------
        ModelFileError
            No candidate could be loaded (e.g. the default model is missing
            and the shared one is not trained yet), or the first load of a
            candidate failed.
        """
        for path, kind in self._candidates(user):
            slot = self._slot(path, kind)
            await self._refresh(slot)
            if slot.model is not None and self._ready(slot.model):
                return slot.model
            if slot.model is None and slot.error:
                # The file exists but never loaded (or cannot be reached): say
                # so, rather than quietly scoring with a fallback the admin
                # does not expect.
                raise ModelFileError(slot.error)
        if self.exact_model:
            # --model names the one file to use: the default is no candidate,
            # and "the packaged default model is missing" sent the admin the
            # wrong way (a helper's review).
            raise ModelFileError(f"no model file at {self.settings.model_path}")
        raise ModelFileError("no model to score with (the packaged default model is missing)")

    async def settled(self) -> None:
        """Check the shared and default models' files now, and wait for any
        newer version to load (a score would go on with the old one meanwhile)."""
        for path, kind in self._candidates(None):
            slot = self._slot(path, kind)
            slot.checked_at = float("-inf")
            await self._refresh(slot)
            if slot.loading is not None:
                await asyncio.shield(slot.loading)

    def invalidate(self, path: Path) -> None:
        """Check ``path`` on the next request (a learn request just changed it).

        By the file it names: a learn through a symlinked model name reports
        the file (``ModelStore.model_path``), while scoring watches the name
        configured (a helper's review: the next score came from the old
        model until the reload interval passed)."""
        target = model_file(path)
        for slot in itertools.chain(self._slots.values(), self._user_slots.values()):
            if slot.path == path or model_file(slot.path) == target:
                slot.checked_at = float("-inf")

    def loaded(self) -> list[LoadedModel]:
        slots = list(self._slots.values()) + list(self._user_slots.values())
        return [s.model for s in slots if s.model is not None]

    def errors(self) -> dict[str, str]:
        """Model files whose latest version failed to load, and why."""
        slots = list(self._slots.values()) + list(self._user_slots.values())
        return {str(s.path): s.error for s in slots if s.error}

    # -- slots --------------------------------------------------------------------------
    def _slot(self, path: Path, kind: str) -> _Slot:
        if kind == ModelKind.USER:
            slot = self._user_slots.get(path)
            if slot is None:
                slot = self._user_slots[path] = _Slot(path, kind)
                while len(self._user_slots) > self.max_user_models:
                    self._user_slots.popitem(last=False)
            else:
                self._user_slots.move_to_end(path)
            return slot
        slot = self._slots.get(path)
        if slot is None:
            slot = self._slots[path] = _Slot(path, kind)
        return slot

    async def _refresh(self, slot: _Slot) -> None:
        now = time.monotonic()
        if now - slot.checked_at < self.reload_interval:
            return
        slot.checked_at = now
        try:
            key = _file_key(slot.path)
        except ModelFileError as exc:
            # As for a new version that does not load: a model in memory
            # goes on answering, the error said once; with none, the
            # request is told (``for_user``).
            if slot.model is not None and slot.error != str(exc):
                log.error("keeping %s revision %s: %s", slot.path, slot.model.classifier.revision, exc)
            slot.error = str(exc)
            return
        if slot.failed_key is None:
            slot.error = None   # only a load's error has a key: this was the stat's, passed
        current = slot.model.file_key if slot.model else None
        if key == current:
            return
        if key is None:
            # Removed: stop using it (fall back, as the command line would).
            slot.model, slot.error, slot.failed_key = None, None, None
            return
        if key == slot.failed_key:
            return  # this version already failed; wait for the next one
        if slot.loading is None:
            slot.loading = asyncio.get_running_loop().create_task(self._load(slot, key))
        if slot.model is None:
            # Nothing to answer with meanwhile: wait (shielded, so one
            # cancelled request does not cancel the load for the others).
            await asyncio.shield(slot.loading)
        else:
            # The request that saw the change waits a little for it: a
            # model file loads in 15-100 ms, and without the wait the first
            # score after every retrain came from the model before it (a
            # helper's review).  A load that takes longer is not waited
            # for: the old model answers, as before.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(slot.loading), RELOAD_WAIT)

    async def _load(self, slot: _Slot, key: FileKey) -> None:
        try:
            model = await run_in_threadpool(load_model, slot.path, slot.kind, self.settings)
        except ModelFileError as exc:
            slot.failed_key, slot.error = key, str(exc)
            if slot.model is not None:
                self.metrics.count_reload("failed")
                log.error("keeping %s revision %s: the new file does not load: %s",
                          slot.path, slot.model.classifier.revision, exc)
            else:
                log.error("cannot load %s: %s", slot.path, exc)
        else:
            if slot.model is not None:
                self.metrics.count_reload("ok")
                log.info("reloaded %s: revision %s -> %s", slot.path,
                         slot.model.classifier.revision, model.classifier.revision)
            slot.model, slot.failed_key, slot.error = model, None, None
        finally:
            slot.loading = None

"""Whose verdict and when: the IMAP trainer's labels against a real Dovecot,
where several users share one model or the clock has been set back."""

from __future__ import annotations

import datetime
import os
import time

import pytest
from test_imap_trainer import account_of, make_message, model_counts, move, train_cli, upload, write_config

from spamlearn.api.service import Service
from spamlearn.classifier import Label
from spamlearn.config import load_settings
from spamlearn.imap import Trainer, load_accounts
from spamlearn.server_settings import ServerSettings
from spamlearn.sieve.drain import drain_spool
from spamlearn.sieve.spool import Spool

pytestmark = pytest.mark.integration

LONG_AGO = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)


def delivered(user: str, raw: bytes) -> bytes:
    """``raw`` as the delivery to ``user`` writes it (headers the digest leaves out)."""
    return (f"Return-Path: <bounce@example.net>\r\nDelivered-To: {user}@example.org\r\n"
            f"Received: from mx.example.org\r\n\tby mail.example.org (Dovecot) with LMTP\r\n"
            f"\tfor <{user}@example.org>; Sat, 28 Nov 2026 10:00:00 +0000\r\n").encode() + raw


def test_another_users_young_copy_of_a_junked_message_waits_like_any_young_ham(server, tmp_path):
    """One campaign to alice and bob on a shared model, ham_min_age_days = 3:
    alice junked hers, bob has not looked at his yet.  Bob's copy was taken
    for a rescue and turned alice's spam into ham at once (a helper's review)."""
    campaign = make_message("spam", 1, "campaign")
    upload(server, "alice", "INBOX", [make_message("ham", i, "a") for i in range(2)], when=LONG_AGO)
    upload(server, "bob", "INBOX", [make_message("ham", i, "b") for i in range(2)], when=LONG_AGO)
    upload(server, "alice", "Junk", [delivered("alice", campaign)])
    upload(server, "bob", "INBOX", [delivered("bob", campaign)])
    config = write_config(tmp_path, server, [{"username": "alice", "ham_min_age_days": 3},
                                             {"username": "bob", "ham_min_age_days": 3}])
    code, data, _ = train_cli(config)
    assert code == 0
    bob = account_of(data, "bob")
    assert (bob["relabelled"], bob["deferred"]) == (0, 1)
    assert model_counts(config) == (1, 4)


def test_a_users_own_move_out_of_junk_is_still_learned_at_once(server, tmp_path):
    """The rescue itself: alice's move of a young spam out of her Junk."""
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)], when=LONG_AGO)
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(2)])
    config = write_config(tmp_path, server, [{"username": "alice", "ham_min_age_days": 3}])
    assert train_cli(config)[0] == 0 and model_counts(config) == (2, 2)
    move(server, "alice", "Junk", "INBOX")
    code, data, _ = train_cli(config)
    assert (code, account_of(data, "alice")["relabelled"]) == (0, 1)
    assert model_counts(config) == (1, 3)


def test_a_users_quick_rescue_of_what_another_user_junked_first_is_learned_at_once(server, tmp_path):
    """Bob junked a campaign, alice too (already known: nothing counted);
    the row still said bob's, and alice's move back out a minute later
    waited ham_min_age_days (a second review)."""
    campaign = make_message("spam", 1, "campaign")
    upload(server, "alice", "INBOX", [make_message("ham", i, "a") for i in range(2)], when=LONG_AGO)
    upload(server, "bob", "INBOX", [make_message("ham", i, "b") for i in range(2)], when=LONG_AGO)
    upload(server, "bob", "Junk", [make_message("spam", 7, "b"), delivered("bob", campaign)])
    upload(server, "alice", "Junk", [delivered("alice", campaign)])
    config = write_config(tmp_path, server, [{"username": "bob", "ham_min_age_days": 3},
                                             {"username": "alice", "ham_min_age_days": 3}])
    assert train_cli(config)[0] == 0 and model_counts(config) == (2, 4)
    move(server, "alice", "Junk", "INBOX")
    code, data, _ = train_cli(config)
    alice = account_of(data, "alice")
    assert (code, alice["relabelled"], alice["deferred"]) == (0, 1, 0)
    assert model_counts(config) == (1, 5)


def test_a_correction_after_the_clock_was_set_back_is_learned(server, tmp_path, monkeypatch):
    """A pass made while the host's clock ran 10 minutes fast dated its
    verdicts then; after NTP set the clock back, the user's move out of Junk
    was SUPERSEDED by them and, its UID passed, never seen again (a helper's
    review)."""
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(2)])
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)])
    config = write_config(tmp_path, server, [{"username": "alice"}])
    settings = load_settings(config)
    (account,) = load_accounts(settings)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 600)
    assert Trainer(settings, clock=time.time).train_account(account).exit_code == 0
    monkeypatch.setattr(time, "time", real)
    assert model_counts(config) == (2, 2)
    move(server, "alice", "Junk", "INBOX")
    report = Trainer(settings).train_account(account)
    assert (report.exit_code, report.total("relabelled")) == (0, 1)
    assert model_counts(config) == (1, 3)


def _spam_through_the_service(settings, raw: bytes, user: str) -> None:
    Service(settings, ServerSettings(workers=1)).learn(raw, Label.SPAM, user)


def _spam_through_the_sieve(settings, raw: bytes, user: str, tmp_path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.create()
    (spool.new / f"{int(time.time())}.000000001.{os.getpid()},spam,{user}").write_bytes(raw)
    assert drain_spool(spool, settings).learned == 1


@pytest.mark.parametrize("through", ["service", "sieve"])
@pytest.mark.parametrize("junked_by, rescued", [("alice", True), ("bob", False)])
def test_a_spam_verdict_given_through_the_service_or_the_sieve_is_the_users_own(
        server, tmp_path, through, junked_by, rescued):
    """Alice reported a message as spam through the HTTP service or the
    sieve, then moved it back to her INBOX: the trainer takes that for her
    own rescue (learned as ham at once), and not when bob gave the verdict.
    The writers' ledger sources and the trainer's reading of them must be
    spelt alike (``spamlearn.sources``)."""
    raw = make_message("spam", 1, "reported")
    upload(server, "alice", "INBOX", [make_message("ham", i) for i in range(2)], when=LONG_AGO)
    upload(server, "alice", "Junk", [make_message("spam", i) for i in range(2, 4)])
    upload(server, "alice", "INBOX", [raw])
    config = write_config(tmp_path, server, [{"username": "alice", "ham_min_age_days": 3}])
    settings = load_settings(config)
    if through == "service":
        _spam_through_the_service(settings, raw, junked_by)
    else:
        _spam_through_the_sieve(settings, raw, junked_by, tmp_path)
    code, data, _ = train_cli(config)
    alice = account_of(data, "alice")
    assert code == 0
    assert (alice["relabelled"], alice["deferred"]) == ((1, 0) if rescued else (0, 1))
    assert model_counts(config) == ((2, 3) if rescued else (3, 2))

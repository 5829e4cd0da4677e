"""Ask a running `spamlearn serve` for a verdict, and teach it, with httpx.

    python scripts/client_example.py message.eml [--learn spam|ham] [--url http://127.0.0.1:8731]

The learn token is read from $SPAMLEARN_LEARN_TOKEN_FILE.  A filter should
fail open: if the service cannot answer, deliver the message unscored.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

try:
    import httpx
except ImportError:
    sys.exit("client_example.py needs httpx: pip install httpx (or use client_example.sh, with curl)")


def score(client: httpx.Client, raw: bytes, user: str | None = None) -> dict | None:
    """The service's verdict, or None when it cannot answer (then deliver unscored)."""
    try:
        response = client.post("/score", content=raw, params={"user": user} if user else None,
                               headers={"Content-Type": "message/rfc822"})
        response.raise_for_status()
    except httpx.HTTPError as exc:
        print(f"spamlearn unavailable, message passes unscored: {exc}", file=sys.stderr)
        return None
    return response.json()


#: A learn request waits up to the service's learn_lock_timeout (default 30 s)
#: for another learner (a cron train); the client's 10 s timed out first, with
#: a traceback, while the service went on to learn the message.
LEARN_TIMEOUT = httpx.Timeout(35.0, connect=2.0)


def learn(client: httpx.Client, raw: bytes, label: str, token: str) -> dict:
    try:
        response = client.post("/learn", params={"label": label}, content=raw,
                               headers={"Authorization": f"Bearer {token}"}, timeout=LEARN_TIMEOUT)
    except httpx.HTTPError as exc:
        # Sent again later, the message is counted once all the same.
        raise SystemExit(f"spamlearn did not answer the learn request ({exc}); "
                         "send it again later") from None
    if response.status_code == 503:  # another learner holds the model: try again later
        retry = response.headers.get("Retry-After", "5")
        raise SystemExit(f"model busy, retry in {retry} s: {response.json()['detail']}")
    if response.is_error:  # 401 a wrong token, 403 learning disabled...: was a traceback
        raise SystemExit(f"spamlearn refused the learn request: {response.status_code} {detail(response)}")
    return response.json()


def detail(response: httpx.Response) -> str:
    """The service's reason ({"detail": ...}), or the body of whatever else answered."""
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("message", type=Path)
    parser.add_argument("--learn", choices=["spam", "ham"])
    parser.add_argument("--url", default=os.environ.get("SPAMLEARN_URL", "http://127.0.0.1:8731"))
    args = parser.parse_args()
    # Both read before asking anything, each failure one line (they were
    # tracebacks, the token's KeyError only after the score was printed).
    try:
        raw = args.message.read_bytes()
    except OSError as exc:
        raise SystemExit(f"cannot read {args.message}: {exc.strerror}") from None
    token = None
    if args.learn:
        token_file = os.environ.get("SPAMLEARN_LEARN_TOKEN_FILE")
        if not token_file:
            raise SystemExit("--learn needs the learn token: set SPAMLEARN_LEARN_TOKEN_FILE to its file")
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise SystemExit(f"cannot read the learn token file {token_file}: {exc.strerror}") from None
    # Timeouts on: a filter must never hang the mail queue.
    with httpx.Client(base_url=args.url, timeout=httpx.Timeout(10.0, connect=2.0)) as client:
        verdict = score(client, raw)
        if verdict:
            print(f"{verdict['verdict']} {verdict['spam_prob']:.4f} (model {verdict['model']['name']} "
                  f"revision {verdict['model']['revision']})")
        if token is not None:
            outcome = learn(client, raw, args.learn, token)
            print(f"{outcome['action']} (model revision {outcome['revision']})")


if __name__ == "__main__":
    main()

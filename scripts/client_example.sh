#!/bin/sh
# Ask a running `spamlearn serve` about a message, then teach it (see README, "HTTP service").
#
#   scripts/client_example.sh message.eml [spam|ham]
#
# SPAMLEARN_URL defaults to http://127.0.0.1:8731; the learn token is read
# from SPAMLEARN_LEARN_TOKEN_FILE (never put a token on a command line: ps shows it).
set -eu
url=${SPAMLEARN_URL:-http://127.0.0.1:8731}
url=${url%/}     # "http://host:8731/" would ask for //score, a 404
message=${1:?usage: $0 message.eml [spam|ham]}

# Score: the raw message is the body. --data-binary keeps it byte for byte
# (-d would strip the line ends), -f makes an HTTP error a non-zero exit, and
# --max-time bounds the wait (a learn may wait learn_lock_timeout, 30 s, for the lock).
curl -fsS --max-time 5 --data-binary "@$message" -H 'Content-Type: message/rfc822' "$url/score"
echo

if [ $# -ge 2 ]; then
    # Learn: needs the bearer token; curl reads the header from a file (-H @file),
    # so the token does not appear in the process list.
    header=$(mktemp)
    trap 'rm -f "$header"' EXIT
    printf 'Authorization: Bearer %s\n' "$(cat "${SPAMLEARN_LEARN_TOKEN_FILE:?set SPAMLEARN_LEARN_TOKEN_FILE}")" > "$header"
    curl -fsS --max-time 35 --data-binary "@$message" -H "@$header" "$url/learn?label=$2"
    echo
fi

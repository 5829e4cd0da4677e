#!/usr/bin/env bash
# Install what the tests need, then run them: the README's second command,
# and what CI runs (.ci/run).  Extra arguments go to pytest.
#
#   Debian packages: dovecot-imapd + dovecot-sieve (the IMAP and imapsieve
#   tests start their own throw-away Dovecot on 127.0.0.1), chromium (the
#   evaluation report is opened in a headless browser), systemd (its
#   systemd-analyze checks the shipped units), locales (the source of fr_FR:
#   the shipped backup lines' weekday folder is checked under a French
#   locale), curl (the shell clients),
#   spamc (SpamAssassin's client, against the service's spamd listener),
#   exim4-daemon-heavy (Exim with content scanning: a throw-away Exim's
#   `spam =` ACL condition asks the service's spamd listener; not installed
#   over another MTA, which apt would remove for it),
#   rspamd (its spamassassin scanner against that listener; the tests start
#   their own throw-away Rspamd on 127.0.0.1).
#   postfix: downloaded and unpacked into /var/cache/spamlearn-tests/postfix,
#   not installed (it would replace Exim: one MTA);
#   tests/integration/test_postfix_delivery.py runs that tree with its own
#   config on 127.0.0.1, and creates the accounts it needs when missing
#   (user postfix, group postdrop: system accounts, no login, as the
#   package would).
#   Python packages: spamlearn itself with its [test] extra.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
[ -x /usr/bin/sievec ] || missing+=(dovecot-sieve)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/systemd-analyze ] || missing+=(systemd)
[ -e /usr/share/i18n/locales/fr_FR ] || missing+=(locales)
# The libraries the unpacked postfix links against (its package's Depends;
# present on Debian's base images, named here in case a machine lacks one).
for lib in libdb5.3 libicu72 libnsl2 libsasl2-2 libssl3; do
    dpkg -s "$lib" > /dev/null 2>&1 || missing+=("$lib")
done
[ -x /usr/bin/curl ] || missing+=(curl)
[ -x /usr/bin/spamc ] || missing+=(spamc)
[ -x /usr/bin/rspamd ] || missing+=(rspamd)
exim_built="$(/usr/sbin/exim4 -bV 2>/dev/null || true)"
if [[ "$exim_built" != *Content_Scanning* ]]; then
    if [ -e /usr/sbin/sendmail ] && [ ! -e /usr/sbin/exim4 ]; then
        # exim4 conflicts with every other mail-transport-agent (postfix...).
        echo "not installing exim4-daemon-heavy: it would replace this machine's MTA" \
             "(/usr/sbin/sendmail); tests/integration/test_exim.py will fail" >&2
    else
        missing+=(exim4-daemon-heavy)
    fi
fi
apt_updated=""
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    # Never let the packages start the system's Dovecot, Exim or Rspamd: the tests
    # run their own instances.  policy-rc.d (exit 101) makes invoke-rc.d
    # skip the start; it is removed again if we created it.
    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    $SUDO apt-get update -q
    apt_updated=1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ -n "$created_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

postfix_root=/var/cache/spamlearn-tests/postfix
if [ ! -x "$postfix_root/usr/sbin/postfix" ]; then
    echo "unpacking Debian's postfix package into $postfix_root"
    [ -n "$apt_updated" ] || $SUDO apt-get update -q
    download="$(mktemp -d)"
    # As root into a root-only folder: apt's _apt sandbox could not write there (a warning).
    (cd "$download" && apt-get download -q -o APT::Sandbox::User=root postfix)
    # Unpacked beside, then renamed: an interrupted run leaves no half tree.
    $SUDO mkdir -p "$(dirname "$postfix_root")"
    $SUDO rm -rf "$postfix_root.new"
    $SUDO dpkg-deb -x "$download"/postfix_*.deb "$postfix_root.new"
    $SUDO mv "$postfix_root.new" "$postfix_root"
    rm -rf "$download"
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
exec python3 -m pytest "$@"

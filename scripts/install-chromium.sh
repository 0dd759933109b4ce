#!/usr/bin/env bash
# Make sure Debian's chromium is at /usr/bin/chromium for the browser tests (tests/browser.py drives
# it through Playwright; Playwright's own browser download is never used).  Installs Debian's
# `chromium` package when it is missing and we are root (or have passwordless sudo).  Prints one
# line; exits 1 with the reason when it cannot.
set -euo pipefail

say() { echo "install-chromium: $*" >&2; }

if [[ -x /usr/bin/chromium ]]; then
    say "found $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
sudo=""
if [[ $EUID -ne 0 ]]; then
    if sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        say "no /usr/bin/chromium, and not root (nor passwordless sudo) to install it; install Debian's 'chromium' package"
        exit 1
    fi
fi
say "no /usr/bin/chromium; installing Debian's 'chromium' package..."
aptlog=$(mktemp)
trap 'rm -f "$aptlog"' EXIT
if ! { $sudo apt-get update \
    && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; } \
    >"$aptlog" 2>&1 </dev/null; then
    tail -n 30 "$aptlog" >&2
    say "apt-get install chromium failed"
    exit 1
fi
say "installed $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"

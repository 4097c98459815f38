#!/usr/bin/env bash
# Debian's Chromium, for the browser tests of the consoles (tests/browser, part of make test).
#
# Usage: scripts/chromium.sh install|path
#
#   install  apt-get install chromium when /usr/bin/chromium is missing (as root, or with
#            sudo); then print its version. Never downloads a browser from anywhere else.
#   path     print the browser's path (SHARING_GUARD_CHROMIUM, else /usr/bin/chromium);
#            exit 1 when it is not installed.
#
# The tests drive it with Playwright (the Python package, pinned in constraints.txt) through
# its executable_path: Playwright's own browser downloads are never used.
set -euo pipefail

readonly BROWSER=${SHARING_GUARD_CHROMIUM:-/usr/bin/chromium}

log() { printf 'chromium.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "installing Chromium needs root (or sudo): apt-get install chromium"
    fi
}

install() {
    if [[ -x $BROWSER ]]; then
        "$BROWSER" --version >&2
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: install Chromium and set SHARING_GUARD_CHROMIUM"
    log "installing Debian's chromium (apt)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq || as_root apt-get update
    as_root apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
    [[ -x $BROWSER ]] || die "apt installed chromium but $BROWSER is missing"
    "$BROWSER" --version >&2
}

case "${1:-}" in
    install) install ;;
    path)
        [[ -x $BROWSER ]] || die "$BROWSER is not installed: scripts/chromium.sh install"
        printf '%s\n' "$BROWSER"
        ;;
    *) die "usage: scripts/chromium.sh install|path" ;;
esac

#!/usr/bin/env bash
# Chromium for the console's browser tests: Debian's `chromium` package and a CJK font
# (for the Chinese labels), installed with apt-get when missing (as root, or through
# passwordless sudo). Idempotent: with both present it returns at once. Nothing comes
# from anywhere but the Debian archive; Playwright drives this binary by its path.
set -euo pipefail
# Chinese labels need a CJK font (Debian's chromium brings none).
have_font() { command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]; }
if command -v chromium >/dev/null 2>&1 && have_font; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "ensure-chromium: the browser tests need Debian's 'chromium' and 'fonts-wqy-zenhei'; as root:" >&2
  echo "  apt-get install -y --no-install-recommends chromium fonts-wqy-zenhei" >&2
  exit 1
fi
echo "Installing Debian's chromium and a CJK font for the browser tests (apt-get, first run: ~1 min)"
export DEBIAN_FRONTEND=noninteractive
install=("${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium fonts-wqy-zenhei)
if ! "${install[@]}" >/tmp/tagsmith-apt-chromium.log 2>&1; then
  # A fresh machine may have no package lists yet.
  "${SUDO[@]}" apt-get update -q >>/tmp/tagsmith-apt-chromium.log 2>&1
  "${install[@]}" >>/tmp/tagsmith-apt-chromium.log 2>&1 || {
    echo "ensure-chromium: apt-get could not install chromium; see /tmp/tagsmith-apt-chromium.log" >&2
    tail -20 /tmp/tagsmith-apt-chromium.log >&2
    exit 1
  }
fi
command -v chromium >/dev/null 2>&1 || { echo "ensure-chromium: chromium still not on PATH" >&2; exit 1; }
have_font || { echo "ensure-chromium: no CJK font after installing fonts-wqy-zenhei" >&2; exit 1; }

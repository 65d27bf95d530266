#!/usr/bin/env bash
# What the browser test (tests/interpret/test_views.py) needs beyond the dev extras, which bring playwright:
# a Chromium. We use Debian's (playwright's own browser download needs a CDN we may not reach).
# Installs it with apt-get when it is missing and this user is root; otherwise says how.
set -euo pipefail
if [ -n "${GPTLAB_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the browser test (apt-get)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
else
  echo "note: no chromium here; install it (e.g. sudo apt-get install chromium) or set GPTLAB_CHROMIUM," \
    "else the browser test skips (and fails under CI=true)" >&2
fi

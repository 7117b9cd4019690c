#!/usr/bin/env bash
# Make (or reuse) the pinned virtual env and install this checkout into it; print its path.
# The env lives outside the clone, keyed by the lock file's hash, so a fresh clone (CI) reuses it.
# Also installs Debian's Fashion-MNIST package when the data is missing and apt can.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
hash=$(sha256sum requirements.lock | cut -c1-12)
venv=${COMPRESSMARK_VENV:-$HOME/.cache/compressmark/venv-$hash}
if [ ! -f "$venv/.complete" ]; then
  echo "setup: creating $venv (pinned stack from requirements.lock; first time ~6.5 GB)" >&2
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  log=$(mktemp)
  { "$venv/bin/python" -m pip install -q --upgrade pip \
    && "$venv/bin/python" -m pip install -q -r requirements.lock; } >"$log" 2>&1 \
    || { cat "$log" >&2; echo "setup: pip install failed (log above)" >&2; exit 1; }
  touch "$venv/.complete"
fi
# the checkout itself: quick, redone every time so the env points at this clone
log=$(mktemp)
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e . >"$log" 2>&1 \
  || { cat "$log" >&2; echo "setup: installing this checkout failed (log above)" >&2; exit 1; }
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${COMPRESSMARK_NO_APT:-}" ] \
   && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Debian's dataset-fashion-mnist" >&2
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
   || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) \
   || echo "setup: could not install dataset-fashion-mnist; real-data runs will say how to get it" >&2
fi
# headless Chromium + its driver for the report's browser test (skipped where missing)
if ! command -v chromedriver >/dev/null && [ -z "${COMPRESSMARK_NO_APT:-}" ] \
   && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Debian's chromium and chromium-driver (report browser test)" >&2
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
   || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; }) \
   || echo "setup: could not install chromium; the browser test will be skipped" >&2
fi
echo "$venv"

#!/usr/bin/env bash
# Set up (first run only) with the development extras and run the whole test suite.
# The page tests drive headless Chromium: on a Debian/Ubuntu machine where this runs as root and
# Chromium is missing, it is installed (apt, best effort); elsewhere those tests skip with the reason.
ZOO_EXTRAS=dev source "$(dirname "$0")/setup.sh"
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium + chromium-driver for the page tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
    >/dev/null 2>&1 || echo "could not install chromium: the page tests will skip"
fi
ruff check . && ruff format --check .  # the house style (pyproject.toml); `ruff format .` fixes it
# two processes (pytest-xdist), a test file each at a time: its module fixtures are built once
python -m pytest -q -n 2 --dist loadfile "$@"

#!/usr/bin/env bash
# Set up (first run only) with the development extras and run the whole test suite.
ZOO_EXTRAS=dev source "$(dirname "$0")/setup.sh"
python -m pytest -q "$@"

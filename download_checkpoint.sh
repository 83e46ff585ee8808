#!/usr/bin/env bash
# Make the course's trained weights ready: ./download_checkpoint.sh [--help]
#
# A thin wrapper: the logic (sha256 checks, download, atomic unpack) lives in the package
# workshop/checkpoint/, run as `python -m workshop.checkpoint`. Works with bash 3.2 (macOS).
# Python: $PYTHON if set, else .venv/bin/python in the repository, else python3.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

if [ -n "${PYTHON:-}" ]; then
    py=$PYTHON
elif [ -x "$here/.venv/bin/python" ]; then
    py="$here/.venv/bin/python"
elif command -v python3 >/dev/null 2>&1; then
    py=python3
else
    echo "download_checkpoint: error: no Python found; set PYTHON=/path/to/python3" \
         "or run 'make setup' first" >&2
    exit 1
fi

# Unpacking the shipped archive needs only the standard library, so it runs even before the
# requirements are installed (a download needs Keras): put the repository first on the path.
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
WORKSHOP_CHECKPOINT_PROG=$(basename "$0")
export WORKSHOP_CHECKPOINT_PROG

exec "$py" -m workshop.checkpoint ${1+"$@"}

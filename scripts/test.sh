#!/usr/bin/env bash
# The README's test command: sets up everything from nothing, then runs the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k generator -x).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/dev-env.sh"
"$here/scripts/system-deps.sh"
cd "$here"
# --durations: the slowest tests, in the log, for keeping the suite well under 30 minutes.
exec "${SM_VENV:-$here/.venv}/bin/python" -m pytest --durations=30 "$@"

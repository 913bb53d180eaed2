#!/usr/bin/env bash
# The README's demo command: sets up everything from nothing, then runs a real OMERO.web
# with this app on an embedded PostgreSQL and a generated facility. Ctrl-C stops it all.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/dev-env.sh"
cd "$here"
# One Project of a few GiB (sparse, made in seconds) so progress bars can be watched;
# a later --big-gib overrides it (0: none).
exec "${SM_VENV:-$here/.venv}/bin/python" -m testbed.demo --big-gib 3 "$@"

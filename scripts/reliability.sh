#!/usr/bin/env bash
# The long reliability suite (issue 7): runs the full form of every part in turn, each
# recording its results under docs/reliability/<part>.json, then renders
# docs/reliability.md from all of them. The quick form of each part runs in CI with the
# tests (tests/reliability/test_*.py). Takes about 30 minutes or more on 2 cores.
#
#   scripts/reliability.sh            every part
#   scripts/reliability.sh matrix     only the parts named (module names below)
#
# A part that finds a violation (or fails) does not stop the others; the script exits
# non-zero at the end if any did.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/dev-env.sh"
cd "$here"
python=${SM_VENV:-$here/.venv}/bin/python

parts=(matrix matrix_s3 faults concurrency load bad_input security api_fuzz)
if [ $# -gt 0 ]; then
    parts=("$@")
fi

failed=()
for part in "${parts[@]}"; do
    if [ ! -f "tests/reliability/$part.py" ]; then
        echo "[reliability] no part tests/reliability/$part.py" >&2
        failed+=("$part")
        continue
    fi
    echo "[reliability] $part: $python -m tests.reliability.$part" >&2
    started=$(date +%s)
    if "$python" -m "tests.reliability.$part"; then
        echo "[reliability] $part: passed in $(( $(date +%s) - started )) s" >&2
    else
        echo "[reliability] $part: FAILED (exit $?) after $(( $(date +%s) - started )) s" >&2
        failed+=("$part")
    fi
done

"$python" -c "from tests.reliability.report import render, REPORT; t = render(); \
print(f'[reliability] {REPORT}: {t[\"trials\"]} trials, {t[\"lost\"]} data lost, \
{t[\"violations\"]} violations')" >&2

if [ ${#failed[@]} -gt 0 ]; then
    echo "[reliability] parts with violations or errors: ${failed[*]}" >&2
    exit 1
fi

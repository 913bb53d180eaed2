#!/usr/bin/env bash
# Refreshes the README's pictures (docs/screenshots/) from the browser tests, in headless
# Chromium against the demo. The test suite itself writes its pictures to a temporary
# folder and never touches docs/ (.ci/run checks that the tests leave git status clean).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/dev-env.sh"
"$here/scripts/system-deps.sh"
cd "$here"
SM_SCREENSHOTS=docs/screenshots exec "${SM_VENV:-$here/.venv}/bin/python" -m pytest \
    tests/test_ui_e2e.py tests/test_ui_personas.py -p no:cacheprovider -q "$@"

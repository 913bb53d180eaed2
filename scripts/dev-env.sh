#!/usr/bin/env bash
# Creates the development environment from nothing, idempotently:
#   1. a virtualenv (.venv, or $SM_VENV) with pip, setuptools and wheel,
#   2. zeroc-ice 3.6.5 (needed by omero-py) built once for this Python with the two
#      source fixes Python 3.11 needs, cached in ~/.cache/omero-storagemanager/wheels,
#   3. this project installed editable with its test extras.
# Safe to run again: every step is skipped when already done.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${SM_VENV:-$here/.venv}
python=${PYTHON:-python3}
cache=${SM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/omero-storagemanager/wheels}
ice_version=3.6.5
pyver=$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')

log() { printf '[dev-env] %s\n' "$*" >&2; }

build_ice_wheel() {
    # PyPI has only the 3.6.5 source; it fails on Python >= 3.11 without two fixes.
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    log "building zeroc-ice $ice_version for $pyver (about 4 minutes on 2 cores, done once)"
    "$venv/bin/python" -m pip download --quiet --no-deps --no-binary :all: \
        "zeroc-ice==$ice_version" -d "$work"
    tar -xzf "$work"/zeroc-ice-$ice_version.tar.gz -C "$work"
    local src=$work/zeroc-ice-$ice_version
    sed -i '/#include <eval.h>/d' "$src/src/Slice.cpp"
    sed -i 's/PyThreadState_GET()->frame/PyEval_GetFrame()/' "$src/src/Util.cpp"
    mkdir -p "$cache"
    # Built by the virtualenv's Python, which has setuptools and wheel (installed just
    # above), so the first attempt succeeds and prints no bdist_wheel error that a
    # fallback would then contradict.
    "$venv/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation "$src" -w "$cache"
}

if [ ! -x "$venv/bin/python" ]; then
    log "creating virtualenv $venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip setuptools wheel
fi

ice_wheel=$(ls "$cache"/zeroc_ice-$ice_version-$pyver-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$ice_wheel" ]; then
    build_ice_wheel
    ice_wheel=$(ls "$cache"/zeroc_ice-$ice_version-$pyver-*.whl | head -n1)
fi
log "zeroc-ice wheel: $ice_wheel"

stamp=$venv/.sm-installed
# Again when the C extension's source changed: an editable install builds it only then.
if [ ! -f "$stamp" ] || [ "$here/setup.py" -nt "$stamp" ] || [ "$0" -nt "$stamp" ] \
        || [ "$here/omero_storagemanager/engine/_statrows.c" -nt "$stamp" ]; then
    log "installing omero-storagemanager (editable, with test extras)"
    "$venv/bin/pip" install --quiet "$ice_wheel"
    "$venv/bin/pip" install --quiet -e "$here[test]"
    touch "$stamp"
fi
log "ready: $venv"

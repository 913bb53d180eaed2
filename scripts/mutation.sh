#!/usr/bin/env bash
# Mutation testing of the safety-critical modules (issue 19): purge, purgecheck, restore,
# copyfile, beneath, membership, permissions, bagcheck. Prints killed / timeout /
# survived and the score per module; exit 0 when at least 90% of the mutants run are
# caught. See "Mutation testing (issue 19)" in docs/reliability.md.
#
#   scripts/mutation.sh                       # every mutant (about 1,340: hours, see docs)
#   MUTATION_SAMPLE=20 scripts/mutation.sh    # a seeded random sample of 20 per module
#   scripts/mutation.sh --module purge restore --sample 25 --seed 7 --json /tmp/m.json
#
# The mutants are written into a COPY of the tree (never the working tree, never .git);
# mutmut 2.x (its own tool virtualenv, $MUTATION_VENV) generates them, the project's
# virtualenv runs the tests. One pytest at a time: the test bed starts its own PostgreSQL.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${SM_VENV:-$here/.venv}
tool=${MUTATION_VENV:-$here/.mutation-venv}
if [ ! -x "$tool/bin/python" ] || ! "$tool/bin/python" -c "import mutmut" 2>/dev/null; then
    "$venv/bin/python" -m venv "$tool"
    "$tool/bin/pip" install -q "mutmut>=2.5,<3"
fi
copy=$(mktemp -d "${TMPDIR:-/tmp}/sm-mutation.XXXXXX")
trap 'rm -rf "$copy"' EXIT
# the tree without .git, the virtualenvs and bytecode
tar -C "$here" --exclude=./.git --exclude=./.venv --exclude=./.mutation-venv \
    --exclude='__pycache__' -cf - . | tar -C "$copy" -xf -
# backends/ is shipped as omero_storagemanager.backends (setup.py's package_dir): the
# editable install maps that name to the WORKING TREE's backends/, so without this link
# the tests (which import omero_storagemanager.backends.bag) never see a bagcheck mutant
ln -s ../backends "$copy/omero_storagemanager/backends"
# make sure the copy, not the editable install of the working tree, is what gets imported
imported=$(cd "$copy" && PYTHONPATH="$copy" PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -c \
    "import omero_storagemanager, backends, omero_storagemanager.backends.bagcheck as b
print(omero_storagemanager.__file__, backends.__file__, b.__file__)")
case "$imported" in
    "$copy"/*" $copy"/*" $copy"/*) ;;
    *) echo "the copy is not the one imported: $imported" >&2; exit 2 ;;
esac
# not exec: the EXIT trap must still remove the copy
status=0
"$tool/bin/python" "$here/scripts/mutation.py" --tree "$copy" --python "$venv/bin/python" \
    --sample "${MUTATION_SAMPLE:-0}" --seed "${MUTATION_SEED:-19}" "$@" || status=$?
exit $status

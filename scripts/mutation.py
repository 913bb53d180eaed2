"""Mutation testing of the safety-critical modules (issue 19), driven by mutmut 2.x.

mutmut generates the mutants (its own operators: numbers, strings, comparison and
boolean operators, keywords, call arguments, assignments...); this driver only decides
which of them to run and where. It never touches the working tree: scripts/mutation.sh
copies the tree to a scratch directory and passes it as --tree; each mutant is written
there, its module's tests run against the copy (PYTHONPATH first, no bytecode written, so
a mutant of the same size and mtime second can never be served from a stale .pyc), and
the original is put back before the next one.

    python scripts/mutation.py --tree /tmp/copy --python .venv/bin/python \
        [--sample N] [--seed S] [--module purge ...] [--json out.json]

--sample 0 (the default of scripts/mutation.sh without MUTATION_SAMPLE) runs every mutant.
A mutant is *killed* when its tests fail (or cannot even be collected), *survived* when
they pass, *timeout* when they run longer than max(3 x the unmutated run, 60 s): a
timeout counts as caught (the mutant made the code hang or loop), as mutmut counts it.
"""
import argparse
import difflib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from mutmut import ALL, Context, list_mutations, mutate

# module id -> (file, the tests that cover it). The -k keeps test_archive.py to the
# purge/restore cases: its archive-only tests never reach these modules.
PURGE_TESTS = ["tests/test_purge_reality.py", "tests/test_archive.py", "-k", "purge or restore"]
MODULES = {
    "purge": ("omero_storagemanager/engine/purge.py", PURGE_TESTS),
    "purgecheck": ("omero_storagemanager/engine/purgecheck.py", PURGE_TESTS),
    "restore": ("omero_storagemanager/engine/restore.py",
                PURGE_TESTS[:2] + ["tests/test_states.py", "tests/test_beneath.py", "-k",
                                   "purge or restore or beneath or state"]),
    "copyfile": ("omero_storagemanager/engine/copyfile.py",
                 ["tests/test_streamcopy.py", "tests/test_batchcopy.py"]),
    "beneath": ("omero_storagemanager/engine/beneath.py",
                ["tests/test_beneath.py", "tests/test_roots.py"]),
    "membership": ("omero_storagemanager/catalog/membership.py", ["tests/test_membership.py"]),
    "permissions": ("omero_storagemanager/permissions.py",
                    ["tests/test_permissions.py", "tests/test_permission_matrix.py"]),
    "bagcheck": ("backends/bagcheck.py", ["tests/backends/test_bag.py"]),
}
EXTRA_TESTS = ["tests/test_mutants_killed.py"]  # the tests written for this survivors
PYTEST = ["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]


def mutants_of(path):
    source = path.read_text()
    ids = list_mutations(Context(source=source, filename=str(path)))
    return source, ids


def mutant_source(path, source, mid):
    ctx = Context(source=source, mutation_id=mid, filename=str(path))
    mutated, count = mutate(ctx)
    assert count == 1, f"{path}:{mid.line_number + 1}: {count} mutations applied"
    return mutated


def run_tests(tree, python, tests, timeout):
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    start = time.monotonic()
    proc = subprocess.Popen([python, *PYTEST, *tests], cwd=tree, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        status = "survived" if proc.returncode == 0 else "killed"
        if proc.returncode == 5:
            status = "error"  # no test collected: the command is wrong, not the mutant caught
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        status = "timeout"
    return status, time.monotonic() - start, out.decode(errors="replace")


def tests_for(name, tree):
    tests = list(MODULES[name][1])
    extra = [t for t in EXTRA_TESTS if (tree / t).exists()]
    if not extra:
        return tests
    if "-k" in tests:  # a -k would filter the extra file too: select its tests by name
        i = tests.index("-k")
        tests[i + 1] = f"({tests[i + 1]}) or mutants_killed"
    return extra + tests


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", required=True, type=Path, help="a COPY of the repository")
    ap.add_argument("--python", default=sys.executable, help="the project's interpreter")
    ap.add_argument("--sample", type=int, default=0, help="mutants per module, 0 = all")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--module", nargs="*", default=list(MODULES))
    ap.add_argument("--json", type=Path, help="write every mutant's outcome here")
    ap.add_argument("--only", type=int, nargs="*",
                    help="run these mutant indices (as printed, '#N') instead of a sample")
    ap.add_argument("--no-extra", action="store_true",
                    help="leave out tests/test_mutants_killed.py (the 'before' figures)")
    args = ap.parse_args(argv)
    tree = args.tree.resolve()
    if (tree / ".git").exists():
        sys.exit(f"{tree} has a .git: mutate a copy of the tree, never the working tree")
    if args.no_extra:
        EXTRA_TESTS.clear()
    for cache in tree.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    results = {}
    for name in args.module:
        rel, _ = MODULES[name]
        tests = tests_for(name, tree)
        path = tree / rel
        source, ids = mutants_of(path)
        chosen = list(range(len(ids)))
        if args.only is not None:
            chosen = [n for n in args.only if n < len(ids)]
        elif args.sample and args.sample < len(ids):
            chosen = sorted(random.Random(f"{args.seed}:{name}").sample(chosen, args.sample))
        status, base_time, out = run_tests(tree, args.python, tests, timeout=1800)
        if status != "survived":
            sys.exit(f"{name}: the unmutated tests do not pass:\n{out[-3000:]}")
        timeout = max(3 * base_time, 60)
        print(f"== {name}: {len(ids)} mutants, running {len(chosen)}; tests "
              f"{' '.join(tests)} take {base_time:.1f}s unmutated", flush=True)
        outcomes = []
        try:
            for n in chosen:
                mid = ids[n]
                mutated = mutant_source(path, source, mid)
                path.write_text(mutated)
                status, took, out = run_tests(tree, args.python, tests, timeout)
                path.write_text(source)
                diff = "".join(l for l in difflib.unified_diff(
                    source.splitlines(True), mutated.splitlines(True), n=0)
                    if l[:1] in "+-" and l[:3] not in ("+++", "---"))
                outcomes.append({"index": n, "line": mid.line_number + 1, "status": status,
                                 "seconds": round(took, 1), "diff": diff.strip()})
                print(f"  #{n} line {mid.line_number + 1}: {status} ({took:.0f}s)"
                      + ("" if status in ("killed", "timeout") else "\n    " +
                         diff.strip().replace("\n", "\n    ")), flush=True)
        finally:
            path.write_text(source)
        counts = {s: sum(o["status"] == s for o in outcomes)
                  for s in ("killed", "timeout", "survived", "error")}
        caught = counts["killed"] + counts["timeout"]
        ran = len(outcomes)
        results[name] = {"file": rel, "tests": tests, "mutants": len(ids), "ran": ran,
                         "unmutated_seconds": round(base_time, 1), **counts,
                         "score": round(100 * caught / ran, 1) if ran else None,
                         "outcomes": outcomes}
        print(f"== {name}: {caught}/{ran} caught ({results[name]['score']}%), "
              f"{counts['survived']} survived, {counts['timeout']} timeout", flush=True)
    total_ran = sum(r["ran"] for r in results.values())
    total_caught = sum(r["killed"] + r["timeout"] for r in results.values())
    print("\nmodule        mutants  ran  killed  timeout  survived  score")
    for name, r in results.items():
        print(f"{name:<13} {r['mutants']:>7} {r['ran']:>4} {r['killed']:>7} {r['timeout']:>8} "
              f"{r['survived']:>9}  {r['score']}%")
    if total_ran:
        print(f"{'all':<13} {sum(r['mutants'] for r in results.values()):>7} {total_ran:>4}"
              f"{'':>27}  {100 * total_caught / total_ran:.1f}%")
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "sample": args.sample,
                                         "modules": results}, indent=1) + "\n")
    return 0 if total_ran and total_caught / total_ran >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())

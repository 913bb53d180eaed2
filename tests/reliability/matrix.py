"""Seeded kill -9 matrix: archive, purge and restore killed at random instants, run again.

Issue 7 (reliability). Each trial:
  1. generates a fresh facility (its own OMERO-shaped database and repository) and brings
     one big Screen (hundreds of files) to the state the operation needs: online for
     archive; archived for purge; archived and purged for restore (in process, with the
     engine);
  2. starts the console script `omero-storagemanager archive|purge|restore` in a
     subprocess and SIGKILLs it at a seeded random point: either after a random delay,
     or as soon as the app database holds at least N rows of the operation's progress
     (CopyFile rows for archive, PurgedFile rows for purge, restored PurgedFile rows for
     restore), N random;
  3. runs the same command again, bounded in time, to completion;
  4. counts, instead of asserting, so that a run reports every violation it meets:
       lost    primary files gone without a purge record, or changed (content or mode);
       corrupt archive copies marked verified that do not match their manifest (bagit
               validation, CopyFile checksums, one row per file), and payload files under
               their final name in an unfinished bag that are not whole;
       unsafe  files deleted from the repository without a verified copy holding exactly
               their content;
       stuck   the re-run did not complete (exit 0) within its bound, or left the
               collection in a state other than the operation's end state.
Goal: zero of each.

Full run (writes docs/reliability.md):
    .venv/bin/python -m tests.reliability.matrix --trials 100 --seed 1
The pytest test (tests/reliability/test_kill_matrix.py) runs a quick matrix and writes
its report to a temporary path.

Standalone, the runner starts its own PostgreSQL and configures omeroweb.settings the
way the pytest plugin does (testbed/fixtures.py), so Django models are imported lazily.
"""
import argparse
import ast
import datetime
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REPORT = REPO / "docs" / "reliability.md"
FAULT_TESTS = REPO / "tests" / "test_archive_faults.py"
OPERATIONS = ("archive", "purge", "restore")
COUNTERS = ("lost", "corrupt", "unsafe", "stuck")
TRIAL_BOUND = 240  # seconds: one trial, set-up and checks included
RERUN_BOUND = 150  # seconds: the re-run must complete within this
KILL_BOUND = 90  # seconds: a killed run that neither reaches its kill point nor ends
# Kill delays after the start of the process, per operation: the console script needs
# about a second to start; archive then copies for a few seconds, purge and restore of
# the same Screen take one or two (measured on a 2-core machine).
DELAYS = {"archive": (0.3, 5.0), "purge": (0.3, 3.0), "restore": (0.3, 3.0)}


@dataclass
class Trial:
    index: int
    operation: str
    kill: str  # "delay 1.23s" or "after 120 rows"
    killed: bool = False  # killed mid-run (False: the run ended before its kill point)
    rows_at_kill: int = 0
    resumed: bool = False  # archive: the re-run finished the copy begun, not a new one
    seconds: float = 0.0
    lost: int = 0
    corrupt: int = 0
    unsafe: int = 0
    stuck: int = 0
    notes: list = field(default_factory=list)

    def bad(self):
        return sum(getattr(self, c) for c in COUNTERS)


def plan(trials, seed):
    """The seeded plan: (operation, kill point) per trial. Operations come in shuffled
    rounds of three, so that every operation is tried about as often."""
    rng = random.Random(seed)
    out = []
    while len(out) < trials:
        ops = list(OPERATIONS)
        rng.shuffle(ops)
        for op in ops:
            if rng.random() < 0.5:  # seconds after the start of the process
                out.append((op, ("delay", round(rng.uniform(*DELAYS[op]), 2))))
            else:  # a fraction of the rows the operation writes, turned into N rows
                out.append((op, ("rows", round(rng.random(), 3))))
    return out[:trials]


# -- invariant counters -----------------------------------------------------------------

def count_lost(before, purge_rows=()):
    """Primary files gone (not accounted for by a purge record) or changed."""
    from tests.test_archive_faults import sha1

    n, notes = 0, []
    for path, (digest, mode) in before.items():
        if not os.path.lexists(path):
            if path not in purge_rows:
                n += 1
                notes.append(f"lost {path}")
        elif sha1(path) != digest or (os.stat(path).st_mode & 0o7777) != mode:
            n += 1
            notes.append(f"changed {path}")
    return n, notes


def count_corrupt_copies(world, key):
    """Verified copies that do not match their manifest; unfinished bags holding a payload
    file under its final name that is not whole."""
    import bagit

    from omero_storagemanager.models import Copy
    from tests.test_archive_faults import assert_payload_trustworthy, sha1

    n, notes = 0, []
    expected = {world.paths.relative(f["path"]) for f in world.truth.collections[key]["files"]}
    for copy in Copy.objects.filter(collection=world.collection(key), state=Copy.VERIFIED):
        bag_dir = copy.location.backend().write_root / copy.bag_path
        try:
            bagit.Bag(str(bag_dir)).validate()
        except Exception as e:  # noqa: BLE001 - any failure is a corrupt copy
            n += 1
            notes.append(f"copy {copy.pk}: bag invalid: {e}")
            continue
        rows = list(copy.entries.values_list("relpath", "checksum"))
        relpaths = [r for r, _ in rows]
        if len(relpaths) != len(set(relpaths)) or set(relpaths) != expected \
                or copy.files != len(expected):
            n += 1
            notes.append(f"copy {copy.pk}: rows are not one per file of the collection")
        for relpath, checksum in rows:
            if sha1(bag_dir / "data" / relpath) != checksum:
                n += 1
                notes.append(f"copy {copy.pk}: {relpath} differs from its row")
    for location in {c.location for c in Copy.objects.filter(collection=world.collection(key))}:
        try:
            assert_payload_trustworthy(world, location)
        except (AssertionError, OSError) as e:
            n += 1
            notes.append(f"unfinished copy at {location.name}: {e}")
    return n, notes


def count_unsafe(world, key, before):
    """Purge records whose file is gone without a verified copy holding its content."""
    from omero_storagemanager.models import Copy, PurgedFile
    from tests.test_archive_faults import sha1

    n, notes, rows = 0, [], {}
    for row in PurgedFile.objects.filter(collection=world.collection(key)).select_related(
            "copy_file__copy__location"):
        rows[row.path] = row
        if os.path.lexists(row.path):
            continue  # still there (intent only, or restored): nothing at risk
        copy = row.copy_file.copy
        bag_file = copy.location.backend().write_root / copy.bag_path / "data" / row.relpath
        ok = (row.copy_file.verified and copy.state == Copy.VERIFIED
              and row.sha1 == row.copy_file.checksum == before[row.path][0]
              and bag_file.is_file() and sha1(bag_file) == before[row.path][0])
        if not ok:
            n += 1
            notes.append(f"{row.path} deleted without a verified copy of it")
    return n, notes, rows


# -- one trial ----------------------------------------------------------------------------

def progress_rows(operation, world, key, location):
    from omero_storagemanager.models import CopyFile, PurgedFile

    if operation == "archive":
        return CopyFile.objects.filter(copy__location=location).count()
    rows = PurgedFile.objects.filter(collection=world.collection(key))
    if operation == "restore":
        rows = rows.filter(state=PurgedFile.RESTORED)
    return rows.count()


def kill_at(proc, condition, bound=KILL_BOUND):
    """SIGKILL proc once condition() holds. True if killed, False if it ended first."""
    deadline = time.monotonic() + bound
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                proc.communicate()
                return False
            if condition():
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                return proc.returncode == -signal.SIGKILL
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # never reached: kill it there
        proc.communicate()
        return True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def truncate_app_tables():
    from django.apps import apps
    from django.db import connection

    tables = [m._meta.db_table for m in apps.get_app_config("storagemanager").get_models()]
    tables += [m._meta.db_table for m in apps.get_app_config("django_q").get_models()]
    with connection.cursor() as cur:
        cur.execute("TRUNCATE {} CASCADE".format(", ".join('"%s"' % t for t in tables)))


def run_trial(server, index, operation, kill, seed, workdir):
    from omero_storagemanager.models import Collection, Copy, PurgedFile
    from tests.test_archive_faults import FaultWorld, many_files, start_cli

    kind, value = kill
    trial = Trial(index, operation, f"delay {value}s")
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"trial{index}-", dir=workdir))
    name = f"rel_{seed}_{index}"
    truncate_app_tables()
    world = FaultWorld(server, name, root)
    try:
        key = world.key_where(many_files)
        before = world.primaries(key)
        location = world.location("hdd")
        if operation in ("purge", "restore"):
            world.archive(key, location)
        if operation == "restore":
            world.purge(key)
        if kind == "rows":  # N rows of the total the operation writes
            shared = {f["path"] for f in world.truth.collections[key]["files"]
                      if f["shared_with"]}
            total = len(before) if operation == "archive" else len(set(before) - shared)
            value = int(value * total)
            trial.kill = f"after {value}/{total} rows"
        omerodir = world.omerodir(root / "omerodir", copy_workers=2)
        args = (operation, key, "--quiet") if operation == "archive" else (operation, key)

        proc = start_cli(omerodir, *args)
        t0 = time.monotonic()
        if kind == "delay":
            condition = lambda: time.monotonic() - t0 >= value  # noqa: E731
        else:
            condition = lambda: progress_rows(operation, world, key, location) >= value  # noqa: E731
        trial.killed = kill_at(proc, condition)
        trial.rows_at_kill = progress_rows(operation, world, key, location)

        # Right after the kill: nothing that looks complete is not whole, nothing unsafe.
        purge_rows = {}
        if operation != "archive":
            n, notes, purge_rows = count_unsafe(world, key, before)
            trial.unsafe += n
            trial.notes += notes
        n, notes = count_corrupt_copies(world, key)
        trial.corrupt += n
        trial.notes += notes

        # Run again, bounded, to completion.
        bound = min(RERUN_BOUND, max(10.0, TRIAL_BOUND - (time.monotonic() - started)))
        try:
            done = subprocess.run([proc.args[0], *args], env=proc_env(omerodir),
                                  capture_output=True, text=True, timeout=bound)
            if done.returncode != 0:
                trial.stuck += 1
                trial.notes.append(f"re-run exit {done.returncode}: {done.stderr.strip()[-300:]}")
        except subprocess.TimeoutExpired:
            trial.stuck += 1
            trial.notes.append(f"re-run did not complete within {bound:.0f}s")

        state = world.collection(key).state
        if operation == "archive":
            trial.resumed = Copy.objects.filter(location=location).count() == 1
            if state != Collection.ARCHIVED:
                trial.stuck += 1
                trial.notes.append(f"collection {state} after the archive re-run")
        elif operation == "purge":
            if state not in (Collection.PARTIALLY_PURGED, Collection.PURGED) or \
                    PurgedFile.objects.filter(collection=world.collection(key)).exclude(
                        state=PurgedFile.PURGED).exists():
                trial.stuck += 1
                trial.notes.append(f"collection {state}, purge records unfinished after re-run")
        else:
            if state != Collection.ARCHIVED or PurgedFile.objects.filter(
                    collection=world.collection(key)).exclude(state=PurgedFile.RESTORED).exists():
                trial.stuck += 1
                trial.notes.append(f"collection {state}, restore unfinished after re-run")

        n, notes, purge_rows = count_unsafe(world, key, before)
        trial.unsafe += n
        trial.notes += notes
        n, notes = count_corrupt_copies(world, key)
        trial.corrupt += n
        trial.notes += notes
        n, notes = count_lost(before, purge_rows if operation == "purge" else ())
        trial.lost += n
        trial.notes += notes
        if operation == "purge" and not trial.stuck:
            world.restore(key)  # and everything purged comes back whole
            n, notes = count_lost(before)
            trial.lost += n
            trial.notes += [f"after restore: {x}" for x in notes]
    except Exception as e:  # noqa: BLE001 - a trial that cannot finish is stuck, not a crash
        trial.stuck += 1
        trial.notes.append(f"trial error: {type(e).__name__}: {e}")
    finally:
        world.conn.close()
        server.drop_database(name)
        shutil.rmtree(root, ignore_errors=True)
        trial.seconds = time.monotonic() - started
    return trial


def proc_env(omerodir):
    from tests.test_archive_faults import cli_env

    return cli_env(omerodir)


def run_matrix(server, trials, seed, budget=None, log=print):
    """Run the seeded plan; stop starting trials once `budget` seconds have passed."""
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="sm-kill-matrix-")
    results = []
    try:
        for i, (op, kill) in enumerate(plan(trials, seed)):
            if budget is not None and time.monotonic() - started > budget:
                log(f"time budget {budget}s spent: {i} of {trials} trials run")
                break
            t = run_trial(server, i, op, kill, seed, workdir)
            results.append(t)
            log(f"trial {i:3d} {op:7s} {t.kill:16s} killed={t.killed!s:5s} "
                f"rows={t.rows_at_kill:4d} {t.seconds:5.1f}s "
                + " ".join(f"{c}={getattr(t, c)}" for c in COUNTERS)
                + ("" if not t.notes else "  " + "; ".join(t.notes[:3])))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, time.monotonic() - started


# -- report -------------------------------------------------------------------------------

def fault_tests():
    """(test name, runs per test run) of tests/test_archive_faults.py, read from its source."""
    tree = ast.parse(FAULT_TESTS.read_text())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            runs = 1
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize":
                    values = dec.args[1] if len(dec.args) > 1 else None
                    if isinstance(values, (ast.List, ast.Tuple)):
                        runs *= len(values.elts)
                    elif isinstance(values, ast.Call):  # list(ARCHIVE_KILLS)
                        runs *= len(_dict_keys(tree, values))
            out.append((node.name, runs))
    return out


def _dict_keys(tree, call):
    name = call.args[0].id if call.args and isinstance(call.args[0], ast.Name) else None
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name \
                and isinstance(node.value, ast.Dict):
            return node.value.keys
    return [None]


def what_it_did(op, ts):
    killed = sum(t.killed for t in ts)
    completed = sum(1 for t in ts if not t.stuck)
    s = (f"{killed} killed mid-run ({len(ts) - killed} ended before the kill point); "
         f"the re-run completed {completed}/{len(ts)}")
    if op == "archive":
        s += f", finishing the copy it had begun in {sum(t.resumed for t in ts)}/{len(ts)}"
        s += " (one verified bag, valid for `bagit`, one CopyFile row per file)"
    elif op == "purge":
        s += "; every purged file had a verified copy of its content; a restore brought all back"
    else:
        s += "; files back byte-identical, modes too; every purge record restored"
    return s


def write_report(path, results, seed, trials_asked, elapsed, command):
    by_op = {op: [t for t in results if t.operation == op] for op in OPERATIONS}
    lines = [
        "# Reliability",
        "",
        "<!-- Generated by tests/reliability/matrix.py; do not edit by hand. -->",
        f"Regenerate: `{command}` (from the repository root).",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- seed: {seed}; trials asked: {trials_asked}; trials run: {len(results)}; "
        f"wall time: {elapsed:.0f} s",
        f"- machine: nproc {os.cpu_count()}, {os.uname().sysname} {os.uname().release}",
        "",
        "Each trial generates a fresh facility, starts `omero-storagemanager "
        "archive|purge|restore` on a Screen of hundreds of files, SIGKILLs it after a seeded "
        "random delay after its start (archive "
        f"{DELAYS['archive'][0]}-{DELAYS['archive'][1]} s, purge and restore "
        f"{DELAYS['purge'][0]}-{DELAYS['purge'][1]} s) or once the app database holds a "
        "random number of its progress rows (0 to all of them), runs the same command again to completion (bounded: "
        f"{RERUN_BOUND} s), then counts. Lost: primary files gone without a purge record, or "
        "changed. Corrupt: verified copies not matching their manifest, or a payload file "
        "under its final name that is not whole. Unsafe: files deleted without a verified "
        "copy of their content. Stuck: the re-run did not complete in its bound or left the "
        "collection short of its end state.",
        "",
        "| fault class | trials | lost | corrupt | unsafe | stuck | what the system did |",
        "|---|---|---|---|---|---|---|",
    ]
    for op in OPERATIONS:
        ts = by_op[op]
        lines.append(f"| kill -9 during {op} (random) | {len(ts)} | "
                     + " | ".join(str(sum(getattr(t, c) for t in ts)) for c in COUNTERS)
                     + f" | {what_it_did(op, ts) if ts else 'not run'} |")
    total = {c: sum(getattr(t, c) for t in results) for c in COUNTERS}
    lines.append(f"| **all** | {len(results)} | "
                 + " | ".join(str(total[c]) for c in COUNTERS) + " | |")
    lines += [
        "",
        "## Fault classes covered by tests/test_archive_faults.py",
        "",
        "Each runs on every test run (`pytest tests/test_archive_faults.py`); a failure "
        "there fails the suite, so data lost is 0 whenever the suite passes.",
        "",
        "| test | trials |",
        "|---|---|",
    ]
    for name, runs in fault_tests():
        lines.append(f"| `{name}` | {runs} per test run |")
    bad = [t for t in results if t.bad()]
    lines += ["", "## Trials with a violation", ""]
    if not bad:
        lines.append("None.")
    for t in bad:
        lines.append(f"- trial {t.index} ({t.operation}, {t.kill}): " + "; ".join(t.notes[:5]))
    lines += [
        "",
        "## Not covered yet",
        "",
        "- Killing the OMERO.web process (or a django-q2 worker) during a request or job: "
        "only the console script is killed here.",
        "",
    ]
    Path(path).write_text("\n".join(lines))
    return total


# -- standalone ---------------------------------------------------------------------------

def _bootstrap():
    """Start PostgreSQL and set up omeroweb.settings as the pytest plugin does."""
    sys.path.insert(0, str(REPO))
    from testbed import fixtures

    fixtures.pytest_configure(None)
    return fixtures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds after which no new trial starts (the report says "
                             "how many ran)")
    parser.add_argument("--report", default=str(DEFAULT_REPORT))
    args = parser.parse_args(argv)
    command = f".venv/bin/python -m tests.reliability.matrix --trials {args.trials} " \
              f"--seed {args.seed}" + (f" --budget {args.budget:g}" if args.budget else "")
    fixtures = _bootstrap()
    # SIGTERM (a time box ending) stops PostgreSQL and cleans up like the end of a run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results, elapsed = run_matrix(fixtures._state["server"], args.trials, args.seed,
                                      budget=args.budget, log=lambda s: print(s, flush=True))
        total = write_report(args.report, results, args.seed, args.trials, elapsed, command)
    finally:
        fixtures.pytest_unconfigure(None)
        shutil.rmtree(fixtures._state.get("base", ""), ignore_errors=True)
    print(f"{len(results)} trials in {elapsed:.0f}s: "
          + ", ".join(f"{c} {total[c]}" for c in COUNTERS) + f"; report: {args.report}")
    return 1 if any(total.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

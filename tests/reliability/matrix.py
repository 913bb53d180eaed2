"""Seeded kill -9 matrix: archive, purge and restore killed at random instants, finished.

Issue 7 (reliability): "at least 100 trials that SIGKILL a worker at a random instant of
an archive, a purge or a restore (and the web process during a request), restart it, and
let the job finish". Three kinds of trial, each on a fresh facility (its own
OMERO-shaped database and repository) with one big Screen (hundreds of files) brought to
the state the operation needs (online for archive; archived for purge; archived and
purged for restore; in process, with the engine):

  console script     `omero-storagemanager archive|purge|restore` in a subprocess,
                     SIGKILLed at a seeded random point, then the same command run
                     again, bounded, to completion;
  django-q2 worker   the job is queued through the app (tasks/queue.submit, as the UI
                     does) and runs on a real `manage.py qcluster` (same OMERODIR, the
                     shared Django secret key); at a seeded random point SIGKILL either
                     the worker process running the job (Job.worker; django-q2's
                     sentinel starts a new one) or the whole cluster process group (and a
                     new cluster is started); the app's own recovery (django-q2's
                     redelivery, the runner's resume of a job whose heartbeat stopped,
                     the monitor schedule) must finish the job;
  web process        OMERO.web (gunicorn, omeroweb.wsgi) with a cluster; a signed-in
                     admin POSTs the archive|purge|restore action through the JSON API
                     while other requests GET pages, and at a seeded random instant of
                     the POST the gunicorn worker processes (the master respawns them) or
                     the master (a new gunicorn is started) are SIGKILLed; the client
                     retries what got no answer, as a browser user would.

A seeded kill point is either a random delay after the start (of the process, of the
job's submission, of the POST), or, for console and worker trials, the instant the app
database holds N rows of the operation's progress (CopyFile rows for archive,
PurgedFile rows for purge, restored PurgedFile rows for restore), N random.

Counted, instead of asserted, so that a run reports every violation it meets:
  lost       primary files gone without a purge record, or changed (content or mode);
  corrupt    archive copies marked verified that do not match their manifest (bagit
             validation, CopyFile checksums, one row per file), and payload files under
             their final name in an unfinished bag that are not whole;
  unsafe     files deleted from the repository without a verified copy holding exactly
             their content;
  stuck      the re-run did not complete, or the job did not end DONE within its bound
             (a job left queued or running, or FAILED), or the collection was left short
             of the operation's end state;
  duplicates (web) more than one job made for the one action the user asked for;
  5xx        (web) answers with a 5xx status once OMERO.web was up again.
Goal: zero of each.

Full run (writes docs/reliability/kill-matrix.json and re-renders docs/reliability.md):
    .venv/bin/python -m tests.reliability.matrix
The pytest test (tests/reliability/test_kill_matrix.py) runs a quick matrix and records
into a temporary directory.

Standalone, the runner starts its own PostgreSQL and configures omeroweb.settings the
way the pytest plugin does (testbed/fixtures.py), so Django models are imported lazily.
"""
import argparse
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
OPERATIONS = ("archive", "purge", "restore")
KINDS = ("console", "worker", "web")
KIND_TITLES = {"console": "console script", "worker": "django-q2 worker",
               "web": "web process"}
COUNTERS = ("lost", "corrupt", "unsafe", "stuck", "duplicates", "http5xx")
DATA_COUNTERS = ("lost", "corrupt", "unsafe")  # data lost, in the report's totals
# The full run's default trials per kind (about 20 minutes on a 2-core machine).
DEFAULT_TRIALS = {"console": 55, "worker": 30, "web": 15}
DEFAULT_SEED = 1
TRIAL_BOUND = 240  # seconds: one console trial, set-up and checks included
RERUN_BOUND = 150  # seconds: the re-run must complete within this
KILL_BOUND = 90  # seconds: a killed run that neither reaches its kill point nor ends
# Kill delays after the start, per operation: the console script needs about a second
# to start; archive then copies for a few seconds, purge and restore of the same Screen
# take one or two (measured on a 2-core machine). A queued job starts within a poll of
# the cluster (0.2 s) and runs for about a second (archive) or half of one (purge,
# restore); the action's POST takes a few hundredths of a second.
DELAYS = {
    "console": {"archive": (0.3, 5.0), "purge": (0.3, 3.0), "restore": (0.3, 3.0)},
    "worker": {"archive": (0.05, 1.5), "purge": (0.05, 1.0), "restore": (0.05, 0.6)},
    "web": {"archive": (0.0, 0.05), "purge": (0.0, 0.05), "restore": (0.0, 0.05)},
}
# What is SIGKILLed, per kind: worker: the worker process running the job, or the
# cluster's whole process group; web: gunicorn's worker processes (the master starts
# new ones), its master alone (the workers finish their request and exit), or all of it.
TARGETS = {"console": ("process",), "worker": ("worker", "cluster"),
           "web": ("workers", "master", "all")}


@dataclass
class Trial:
    index: int
    operation: str
    kill: str  # "delay 1.23s" or "after 120/400 rows", and what was killed
    kind: str = "console"
    killed: bool = False  # killed mid-run (False: the run ended before its kill point)
    rows_at_kill: int = 0
    resumed: bool = False  # archive: the re-run finished the copy begun, not a new one
    attempts: int = 0  # worker, web: the job's attempts
    answer: str = ""  # web: what the action's POST got, attempt by attempt
    job_seconds: float = 0.0  # worker, web: the job's run, from its start to its end
    seconds: float = 0.0
    lost: int = 0
    corrupt: int = 0
    unsafe: int = 0
    stuck: int = 0
    duplicates: int = 0
    http5xx: int = 0
    notes: list = field(default_factory=list)

    def bad(self):
        return sum(getattr(self, c) for c in COUNTERS)


def plan(seed, console=0, worker=0, web=0):
    """The seeded plan: [(kind, operation, (how, value, target))].

    Per kind, operations come in shuffled rounds of three, so that each is tried about
    as often; kinds are interleaved in proportion, so that a run cut short by its time
    budget still covers every kind. how: "delay" (seconds), "rows" (a fraction of the
    rows the operation writes, turned into N rows at the trial) or, for web trials, "job"
    (the instant the action's Job row is committed, before its answer is read)."""
    counts = {"console": console, "worker": worker, "web": web}
    per_kind = {}
    for kind in KINDS:
        rng = random.Random(f"{seed}:{kind}")
        out = []
        while len(out) < counts[kind]:
            ops = list(OPERATIONS)
            rng.shuffle(ops)
            for op in ops:
                target = rng.choice(TARGETS[kind])
                if kind == "web" and rng.random() < 0.5:  # the job row's commit
                    out.append((kind, op, ("job", 0, target)))
                elif kind == "web" or rng.random() < 0.5:
                    out.append((kind, op, ("delay", round(rng.uniform(*DELAYS[kind][op]), 2),
                                           target)))
                else:
                    out.append((kind, op, ("rows", round(rng.random(), 3), target)))
        per_kind[kind] = out[:counts[kind]]
    merged, taken = [], {k: 0 for k in KINDS}
    while len(merged) < sum(counts.values()):
        kind = min((k for k in KINDS if taken[k] < counts[k]),
                   key=lambda k: ((taken[k] + 0.5) / counts[k], KINDS.index(k)))
        merged.append(per_kind[kind][taken[kind]])
        taken[kind] += 1
    return merged


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
    """Copies counted verified that are not: every verified copy is
    a valid bag whose rows name files of the collection once each and match its files;
    a full copy (no parent) holds every file; unfinished bags hold nothing half-written
    under a final name."""
    import bagit

    from omero_storagemanager.models import Copy
    from tests.test_archive_faults import assert_payload_trustworthy, sha1

    n, notes = 0, []
    expected = {world.paths.relative(f["path"]) for f in world.truth.collections[key]["files"]}
    copies = Copy.objects.filter(collection=world.collection(key))
    for copy in copies.filter(state=Copy.VERIFIED):
        what = f"{'incremental ' if copy.parent_id else ''}copy {copy.pk}"
        bag_dir = copy.location.backend().write_root / copy.bag_path
        try:
            bagit.Bag(str(bag_dir)).validate()
        except Exception as e:  # noqa: BLE001 - any failure is a corrupt copy
            n += 1
            notes.append(f"{what}: bag invalid: {e}")
            continue
        rows = list(copy.entries.values_list("relpath", "checksum"))
        names = [r for r, _ in rows]
        whole = set(names) == expected and copy.files == len(expected)
        if len(names) != len(set(names)) or not set(names) <= expected \
                or (not copy.parent_id and not whole):
            n += 1
            notes.append(f"{what}: rows are not one per file of the collection")
        for relpath, checksum in rows:
            if sha1(bag_dir / "data" / relpath) != checksum:
                n += 1
                notes.append(f"{what}: {relpath} differs from its row")
    for location in {c.location for c in copies}:
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


# -- what every trial shares ---------------------------------------------------------------

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


class Setup:
    """One trial's facility, Screen and location, in the state its operation needs.
    The location and what is counted of its copies are hooks (make_location,
    omerodir_settings, corrupt_copies, unsafe): matrix_s3.py's S3Setup puts the
    copies in a bucket."""

    def __init__(self, server, trial, kill, seed, workdir):
        from tests.test_archive_faults import FaultWorld

        self.server, self.trial = server, trial
        self.root = Path(tempfile.mkdtemp(prefix=f"trial{trial.index}-", dir=workdir))
        self.name = f"rel_{seed}_{trial.index}"
        truncate_app_tables()
        self.world = FaultWorld(server, self.name, self.root)
        self.key = self.world.key_where(self.collection_wanted)
        self.before = self.world.primaries(self.key)
        self.location = self.make_location()
        operation = trial.operation
        if operation in ("purge", "restore"):
            self.world.archive(self.key, self.location)
        if operation == "restore":
            self.world.purge(self.key)
        how, value, target = kill
        self.how, self.value, self.target = how, value, target
        if how == "rows":  # N rows of the total the operation writes
            shared = {f["path"] for f in self.world.truth.collections[self.key]["files"]
                      if f["shared_with"]}
            total = len(self.before) if operation == "archive" \
                else len(set(self.before) - shared)
            self.value = int(value * total)
            trial.kill = f"after {self.value}/{total} rows"
        elif how == "job":
            trial.kill = "at the job's commit"
        else:
            trial.kill = f"delay {value}s"
        if trial.kind != "console":
            trial.kill += f", {target}"

    @staticmethod
    def collection_wanted(c):
        from tests.test_archive_faults import many_files

        return many_files(c)

    def make_location(self):
        return self.world.location("hdd")

    def omerodir_settings(self):
        """omero.web.storagemanager.* settings the trial's processes need besides."""
        return {}

    def corrupt_copies(self, at_end=False):
        return count_corrupt_copies(self.world, self.key)

    def unsafe(self):
        return count_unsafe(self.world, self.key, self.before)

    def rows(self):
        return progress_rows(self.trial.operation, self.world, self.key, self.location)

    def condition(self, t0):
        """The kill point, from t0 (time.monotonic() at the start)."""
        if self.how == "delay":
            return lambda: time.monotonic() - t0 >= self.value
        return lambda: self.rows() >= self.value

    def close(self):
        self.world.conn.close()
        self.server.drop_database(self.name)
        shutil.rmtree(self.root, ignore_errors=True)


def check_after_kill(trial, s):
    """Right after the kill: nothing that looks complete is not whole, nothing unsafe."""
    trial.rows_at_kill = s.rows()
    if trial.operation != "archive":
        n, notes, _ = s.unsafe()
        trial.unsafe += n
        trial.notes += notes
    n, notes = s.corrupt_copies()
    trial.corrupt += n
    trial.notes += notes


def check_end(trial, s, completed):
    """Once finished: the operation's end state, nothing lost, corrupt or unsafe; after a
    purge, a restore brings everything back whole. completed: the re-run or job ended
    well (else it was counted stuck already)."""
    from omero_storagemanager.models import Collection, Copy, PurgedFile

    world, key, operation = s.world, s.key, trial.operation
    state = world.collection(key).state
    if operation == "archive":
        trial.resumed = Copy.objects.filter(location=s.location).count() == 1
        if state != Collection.ARCHIVED:
            trial.stuck += completed
            trial.notes.append(f"collection {state} after the archive")
    elif operation == "purge":
        if state not in (Collection.PARTIALLY_PURGED, Collection.PURGED) or \
                PurgedFile.objects.filter(collection=world.collection(key)).exclude(
                    state=PurgedFile.PURGED).exists():
            trial.stuck += completed
            trial.notes.append(f"collection {state}, purge records unfinished")
    else:
        if state != Collection.ARCHIVED or PurgedFile.objects.filter(
                collection=world.collection(key)).exclude(state=PurgedFile.RESTORED).exists():
            trial.stuck += completed
            trial.notes.append(f"collection {state}, restore unfinished")

    n, notes, purge_rows = s.unsafe()
    trial.unsafe += n
    trial.notes += notes
    n, notes = s.corrupt_copies(at_end=True)
    trial.corrupt += n
    trial.notes += notes
    n, notes = count_lost(s.before, purge_rows if operation == "purge" else ())
    trial.lost += n
    trial.notes += notes
    if operation == "purge" and not trial.stuck:
        world.restore(key)  # and everything purged comes back whole
        n, notes = count_lost(s.before)
        trial.lost += n
        trial.notes += [f"after restore: {x}" for x in notes]


def run_guarded(trial, body):
    """Run one trial's body; a trial that cannot finish is stuck, not a crash."""
    started = time.monotonic()
    try:
        body()
    except Exception as e:  # noqa: BLE001
        trial.stuck += 1
        trial.notes.append(f"trial error: {type(e).__name__}: {e}")
    finally:
        trial.seconds = time.monotonic() - started
    return trial


# -- console trials -------------------------------------------------------------------------

def run_console_trial(server, index, operation, kill, seed, workdir, setup=Setup):
    trial = Trial(index, operation, "", kind="console")

    def body():
        from tests.test_archive_faults import start_cli

        started = time.monotonic()
        s = setup(server, trial, kill, seed, workdir)
        try:
            omerodir = s.world.omerodir(s.root / "omerodir", copy_workers=2,
                                        **s.omerodir_settings())
            args = (operation, s.key, "--quiet") if operation == "archive" \
                else (operation, s.key)
            proc = start_cli(omerodir, *args)
            trial.killed = kill_at(proc, s.condition(time.monotonic()))
            check_after_kill(trial, s)
            # Run again, bounded, to completion.
            bound = min(RERUN_BOUND, max(10.0, TRIAL_BOUND - (time.monotonic() - started)))
            completed = 1
            try:
                done = subprocess.run([proc.args[0], *args], env=proc_env(omerodir),
                                      capture_output=True, text=True, timeout=bound)
                if done.returncode != 0:
                    trial.stuck += 1
                    completed = 0
                    trial.notes.append(f"re-run exit {done.returncode}: "
                                       f"{done.stderr.strip()[-300:]}")
            except subprocess.TimeoutExpired:
                trial.stuck += 1
                completed = 0
                trial.notes.append(f"re-run did not complete within {bound:.0f}s")
            check_end(trial, s, completed)
        finally:
            s.close()

    return run_guarded(trial, body)


def proc_env(omerodir):
    from tests.test_archive_faults import cli_env

    return cli_env(omerodir)


# -- the matrix -----------------------------------------------------------------------------

def run_matrix(server, seed, console=0, worker=0, web=0, budget=None, log=print,
               setup=Setup):
    """Run the seeded plan; stop starting trials once `budget` seconds have passed.
    setup: the trials' Setup (matrix_s3.S3Setup: the copies in an S3 bucket)."""
    from tests.reliability import matrix_services

    runners = {"console": run_console_trial, "worker": matrix_services.run_worker_trial,
               "web": matrix_services.run_web_trial}
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="sm-kill-matrix-")
    results = []
    trials = plan(seed, console, worker, web)
    try:
        for i, (kind, op, kill) in enumerate(trials):
            if budget is not None and time.monotonic() - started > budget:
                log(f"time budget {budget}s spent: {i} of {len(trials)} trials run")
                break
            t = runners[kind](server, i, op, kill, seed, workdir, setup=setup)
            results.append(t)
            log(f"trial {i:3d} {kind:7s} {op:7s} {t.kill:28s} killed={t.killed!s:5s} "
                f"rows={t.rows_at_kill:4d} {t.seconds:5.1f}s "
                + " ".join(f"{c}={getattr(t, c)}" for c in COUNTERS)
                + (f" job {t.job_seconds:.1f}s" if t.kind != "console" else "")
                + (f" {t.answer}" if t.answer else "")
                + ("" if not t.notes else "  " + "; ".join(t.notes[:3])))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, time.monotonic() - started


# -- report -------------------------------------------------------------------------------

def what_it_did(kind, op, ts):
    killed = sum(t.killed for t in ts)
    completed = sum(1 for t in ts if not t.stuck)
    if kind == "console":
        s = (f"{killed} killed mid-run ({len(ts) - killed} ended before the kill point); "
             f"the re-run completed {completed}/{len(ts)}")
    elif kind == "worker":
        resumed = sum(t.attempts > 1 for t in ts)
        s = (f"{killed} killed mid-job ({len(ts) - killed} ended before the kill point); "
             f"the job ended done {completed}/{len(ts)}, resumed by a new attempt in "
             f"{resumed}")
    else:
        lost_answer = sum(t.killed for t in ts)
        refused = sum("409" in t.answer for t in ts)
        s = (f"the action's POST lost its answer to the kill in {lost_answer}/{len(ts)} "
             f"and was retried ({refused} retries refused as already submitted); "
             f"one job per action, done {completed}/{len(ts)}")
    if op == "archive":
        s += f"; one copy, finished where begun, in {sum(t.resumed for t in ts)}/{len(ts)}"
        s += " (one verified bag, valid for `bagit`, one CopyFile row per file)"
    elif op == "purge":
        s += "; every purged file had a verified copy of its content; a restore brought all back"
    else:
        s += "; files back byte-identical, modes too; every purge record restored"
    return s


COLUMNS = ["kind", "operation", "trials", "lost", "corrupt", "unsafe", "stuck",
           "duplicate jobs", "5xx after restart", "what the system did"]


def result_of(results, seed, asked, elapsed, command):
    """The record for tests.reliability.report.record()."""
    rows = []
    for kind in KINDS:
        for op in OPERATIONS:
            ts = [t for t in results if t.kind == kind and t.operation == op]
            if not ts and not asked.get(kind):
                continue
            rows.append([KIND_TITLES[kind], op, len(ts)]
                        + [sum(getattr(t, c) for t in ts) for c in COUNTERS]
                        + [what_it_did(kind, op, ts) if ts else "not run"])
    total = {c: sum(getattr(t, c) for t in results) for c in COUNTERS}
    rows.append(["**all**", "", len(results)] + [total[c] for c in COUNTERS] + [""])
    d = DELAYS
    intro = (
        "Each trial generates a fresh facility and runs an archive, a purge or a restore "
        "of a Screen of hundreds of files, SIGKILLs something at a seeded random instant, "
        "lets it finish, then counts. *Console script*: `omero-storagemanager "
        "archive|purge|restore` is killed (after "
        f"{d['console']['archive'][0]}-{d['console']['archive'][1]} s for archive, "
        f"{d['console']['purge'][0]}-{d['console']['purge'][1]} s for purge and restore, or "
        "once the app database holds a random number of its progress rows), then run again "
        f"to completion (bounded: {RERUN_BOUND} s). *django-q2 worker*: the job is queued "
        "as the UI does and runs on a real `manage.py qcluster`; the worker process "
        "running it, or the whole cluster, is killed (after a random delay or number of "
        "progress rows); the cluster restarts it (sentinel) or a new cluster is started, "
        "and the app's own recovery (redelivery, resume of a job whose heartbeat stopped, "
        "the monitor) must end the job DONE within "
        f"{_job_bound()} s. *Web process*: OMERO.web (gunicorn, 2 workers) with a cluster; "
        "a signed-in admin POSTs the action to the JSON API while pages are fetched, and "
        f"{d['web']['archive'][0]}-{d['web']['archive'][1]} s into the POST, or the instant "
        "its job row is committed, gunicorn's workers (the master starts new ones), its "
        "master alone, or master and workers (then a new gunicorn is started) are "
        "killed; the client retries what got no answer. Lost: primary files gone without "
        "a purge record, or changed. Corrupt: verified copies not matching their manifest, "
        "or a payload file under its final name that is not whole. Unsafe: files deleted "
        "without a verified copy of their content. Stuck: the re-run or job did not end "
        "well within its bound, or left the collection short of its end state. Duplicate "
        "jobs: more than one job for one action. 5xx: server errors once OMERO.web is "
        "up again. Data lost in the summary is lost + corrupt + unsafe.")
    violations = [f"trial {t.index} ({KIND_TITLES[t.kind]}, {t.operation}, {t.kill}): "
                  + "; ".join(t.notes[:5]) for t in results if t.bad()]
    return {
        "part": "kill-matrix", "order": 10, "title": "Kill -9 matrix", "command": command,
        "intro": intro, "trials": len(results),
        "lost": sum(total[c] for c in DATA_COUNTERS),
        "columns": COLUMNS, "rows": rows, "violations": violations,
        "notes": [
            f"seed {seed}; trials asked: "
            + ", ".join(f"{asked.get(k, 0)} {KIND_TITLES[k]}" for k in KINDS)
            + f"; trials run: {len(results)}; wall time {elapsed:.0f} s.",
            "Worker trials run the cluster with django-q2 `timeout` "
            f"{_q('timeout')} s and `retry` {_q('retry')} s and the app's "
            f"`heartbeat_timeout` {_heartbeat()} s, scaled down from production (hours) to "
            "this Screen's jobs of a few seconds: a killed task is redelivered after "
            "`retry` seconds, and the monitor runs every minute.",
            "Storage faults (disk full, permission denied, unmounted, file changed) are "
            "the \"faults\" part; several jobs and users at once, \"concurrency\".",
        ],
    }


def _q(key):
    from tests.reliability.matrix_services import Q_SETTINGS

    return Q_SETTINGS[key]


def _heartbeat():
    from tests.reliability.matrix_services import HEARTBEAT_TIMEOUT

    return HEARTBEAT_TIMEOUT


def _job_bound():
    from tests.reliability.matrix_services import JOB_BOUND

    return JOB_BOUND


# -- standalone ---------------------------------------------------------------------------

def _bootstrap():
    """Start PostgreSQL and set up omeroweb.settings as the pytest plugin does."""
    sys.path.insert(0, str(REPO))
    from testbed import fixtures

    fixtures.pytest_configure(None)
    return fixtures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for kind in KINDS:
        parser.add_argument(f"--{kind}", type=int, default=DEFAULT_TRIALS[kind],
                            help=f"{KIND_TITLES[kind]} trials (default {DEFAULT_TRIALS[kind]})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds after which no new trial starts (the report says "
                             "how many ran)")
    parser.add_argument("--results-dir", default=None,
                        help="where the part's JSON goes (default docs/reliability/)")
    parser.add_argument("--page", default=None, help="the page (default docs/reliability.md)")
    args = parser.parse_args(argv)
    asked = {k: getattr(args, k) for k in KINDS}
    command = ".venv/bin/python -m tests.reliability.matrix" + "".join(
        f" --{k} {asked[k]}" for k in KINDS if asked[k] != DEFAULT_TRIALS[k]) + (
        f" --seed {args.seed}" if args.seed != DEFAULT_SEED else "") + (
        f" --budget {args.budget:g}" if args.budget else "")
    fixtures = _bootstrap()
    from tests.reliability import report

    # SIGTERM (a time box ending) stops PostgreSQL and cleans up like the end of a run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results, elapsed = run_matrix(fixtures._state["server"], args.seed, budget=args.budget,
                                      log=lambda s: print(s, flush=True), **asked)
        result = result_of(results, args.seed, asked, elapsed, command)
        report.record(result, args.results_dir or report.RESULTS_DIR,
                      args.page or report.REPORT)
    finally:
        fixtures.pytest_unconfigure(None)
        shutil.rmtree(fixtures._state.get("base", ""), ignore_errors=True)
    total = {c: sum(getattr(t, c) for t in results) for c in COUNTERS}
    print(f"{len(results)} trials in {elapsed:.0f}s: "
          + ", ".join(f"{c} {total[c]}" for c in COUNTERS))
    return 1 if any(total.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

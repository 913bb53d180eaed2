"""Concurrency: the same collection asked for twice, racing operations, two clusters (issue 7).

Seeded trials with random start offsets, on the real console script, the real django-q2
clusters and the run's embedded PostgreSQL:

  archive twice (console)   two `omero-storagemanager archive KEY --location L` started
                            a seeded 0-1.2 s apart;
  archive twice (queue)     two archive jobs of one collection (1,500 files added) on one ORM
                            cluster with two workers, the second submitted 0-1 s after the
                            first; or the second asked for by the console script instead;
  two clusters, one queue   two django-q2 clusters on one Redis take a seeded batch of
                            jobs submitted with `jobs submit` (archives of several
                            collections, the same collection twice, a scan of it);
  archive/purge/restore     two of them on one collection started 0-0.4 s apart:
                            archive vs purge (not archived yet), purge vs restore
                            (archived), archive vs restore (purged).

Exactly one may work on a collection at a time: the other waits (a queued job, with the
reason) or is refused with a reason (CollectionBusy: "another archive, purge or restore of
it is running"), or runs after it and finds its work done. Counted per trial: data lost
(primary files gone without a purge record or changed, copies counted verified that do
not match, deletions without a verified copy) and rule violations (two winners, an
overlap, a loser without a reason, more than one verified copy per location).

Full run (writes docs/reliability/concurrency.json and re-renders docs/reliability.md):
    .venv/bin/python -m tests.reliability.concurrency
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.reliability.faults import (JOB_BOUND, JobBed, Trial, close_world, counted_loss,
                                      expect, fresh_world, one_clear_line, poll_job,
                                      verified_copies, whole_copy)

PART = "concurrency"
ORDER = 30
TITLE = "Concurrency"
DEFAULT_TRIALS = 8  # per class
BUSY = "another archive, purge or restore of it is running"
CLASSES = {
    "cli": "same collection archived twice at once (console script)",
    "queue": "same collection archived twice (two jobs, or a job and the console script)",
    "clusters": "two django-q2 clusters taking jobs from one Redis queue",
    "race": "archive, purge and restore of one collection racing (console script)",
}
BED_FILES = 1500  # files added to the queue trials' collection: an archive takes seconds
RACES = ("archive vs purge", "purge vs restore", "archive vs restore")


def start(omerodir, *args):
    from tests.test_archive_faults import CLI, cli_env

    return subprocess.Popen([CLI, *args], env=cli_env(omerodir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def both(first, second_args, offset, omerodir, timeout=180):
    """Start the second command `offset` seconds after `first` started; wait for both.
    Returns [(args, exit code, stdout, stderr), ...] in start order."""
    time.sleep(offset)
    second = start(omerodir, *second_args)
    out = []
    for proc in (first, second):
        try:
            o, e = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            o, e = proc.communicate()
        out.append((proc.args[1:], proc.returncode, o, e))
    return out


def verdict(verb, code, out, err):
    """What one console command did: 'won', 'refused', 'nothing to do' or 'error: ...'."""
    if code != 0:
        if BUSY in err and f"{verb} not started" in err:
            return "refused" if one_clear_line(err) else "refused, unclear message"
        return f"error (exit {code}): {err.strip()[-200:]}"
    if verb == "archive":
        return "nothing to do" if "unchanged since its last verified copy" in out else "won"
    if verb == "purge":
        return "won"
    if verb == "restore":
        return ("nothing to do" if "restored 0 file(s)" in out
                or "nothing to restore: its files are online" in out else "won")
    return "won"


# -- archive twice (console script) ---------------------------------------------------------

def trial_cli(world, rng, index, omerodir):
    from omero_storagemanager.engine.locations import add_location
    from tests.test_archive_faults import many_files

    key = world.key_where(many_files)
    before = world.primaries(key)
    offset = round(rng.uniform(0, 1.2), 2)
    trial = Trial("cli", f"second {offset}s after the first")
    mount = world.root / f"mnt-cli{index}"
    mount.mkdir()
    location = add_location(f"cli disk {index}", "hdd", str(mount), 10**10)
    args = ("archive", key, "--location", str(location.pk), "--quiet")
    results = both(start(omerodir, *args), args, offset, omerodir)
    verdicts = [verdict("archive", code, out, err) for _, code, out, err in results]
    trial.extra["verdicts"] = verdicts
    expect(trial, verdicts.count("won") == 1, f"{verdicts.count('won')} winners: {verdicts}")
    loser = [v for v in verdicts if v != "won"]
    expect(trial, loser and loser[0] in ("refused", "nothing to do"),
           f"the other: {loser}")
    expect(trial, verified_copies(world, key, location) == 1,
           f"{verified_copies(world, key, location)} verified copies at the location")
    whole_copy(trial, world, key, location)
    counted_loss(trial, world, key, before)
    trial.outcome = " / ".join(verdicts)
    return trial


# -- archive twice (queue) ------------------------------------------------------------------

class Watcher:
    """Looks at some Job rows every 50 ms from a thread, keeping every (state, wait
    reason) seen: a job that waited says so only while it waits."""

    def __init__(self):
        import threading

        self.ids, self.seen = set(), set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        from django.db import connection

        from omero_storagemanager.models import Job

        try:
            while not self._stop.wait(0.05):
                if self.ids:
                    for pk, state, reason in Job.objects.filter(pk__in=list(self.ids)) \
                            .values_list("pk", "state", "wait_reason"):
                        self.seen.add((pk, state, reason))
        finally:
            connection.close()

    def reasons(self):
        return sorted({r for _, _, r in self.seen if r})

    def stop(self):
        self._stop.set()
        self._thread.join()


def trial_queue(bed, rng, index, variant):
    from omero_storagemanager.engine.locations import add_location
    from omero_storagemanager.models import Job
    from omero_storagemanager.tasks import queue

    world, key = bed.world, bed.key
    offset = round(rng.uniform(0, 1.0), 2)
    trial = Trial("queue", f"{variant}, second {offset}s after the first")
    mount = bed.root / f"mnt-queue{index}"
    mount.mkdir()
    location = add_location(f"queue disk {index}", "hdd", str(mount), 10**10)
    collection = world.collection(key)
    ended = (Job.DONE, Job.FAILED, Job.CANCELLED)
    watcher = Watcher()
    try:
        first = queue.submit("archive", [collection], location)
        watcher.ids.add(first.pk)
        time.sleep(offset)
        if variant == "two jobs":
            second = queue.submit("archive", [collection], location)
            watcher.ids.add(second.pk)
            a = poll_job(first.pk, lambda j: j.state in ended, JOB_BOUND)
            b = poll_job(second.pk, lambda j: j.state in ended, JOB_BOUND)
            reasons = watcher.reasons()
            expect(trial, a.state == Job.DONE and b.state == Job.DONE,
                   f"jobs ended {a.state} ({a.error}) and {b.state} ({b.error})")
            if a.state == b.state == Job.DONE:
                apart = a.finished <= b.started or b.finished <= a.started
                expect(trial, apart, "the two jobs ran at the same time")
            states = [j.summary.get("collections", [{}])[0].get("state") if j.summary else None
                      for j in (a, b)]
            expect(trial, sorted(map(str, states)) == ["archived", "unchanged"],
                   f"job summaries {states}")
            trial.outcome = "one job archived, the other " + (
                "waited with a reason, then found nothing to copy" if reasons
                else "ran after it and found nothing to copy")
        else:  # a job and the console script
            from tests.test_archive_faults import run_cli

            proc = run_cli(bed.omerodir, "archive", key, "--location", str(location.pk),
                           "--quiet", timeout=JOB_BOUND)
            cli = verdict("archive", proc.returncode, proc.stdout, proc.stderr)
            a = poll_job(first.pk, lambda j: j.state in ended, JOB_BOUND)
            reasons = watcher.reasons()
            expect(trial, a.state == Job.DONE, f"the job ended {a.state}: {a.error}")
            job_state = a.summary.get("collections", [{}])[0].get("state") if a.summary else None
            winners = [cli == "won", job_state == "archived"]
            expect(trial, winners.count(True) == 1,
                   f"console {cli}, job {job_state}: not exactly one winner")
            expect(trial, cli in ("won", "refused", "nothing to do"), f"console: {cli}")
            trial.outcome = f"console {cli}, job {job_state}" + (
                " after waiting with a reason" if reasons else "")
    finally:
        watcher.stop()
    trial.extra["waited"] = bool(reasons)
    trial.extra["reasons"] = reasons
    expect(trial, verified_copies(world, key, location) == 1,
           f"{verified_copies(world, key, location)} verified copies at the location")
    whole_copy(trial, world, key, location)
    counted_loss(trial, world, key, bed.before)
    return trial


# -- two clusters, one Redis queue ---------------------------------------------------------------

class RedisClusters:
    def __init__(self, bed, n=2):
        from tests.test_jobs import Cluster, cluster_config
        from testbed.omerodir import write_config
        from testbed.pg import free_port

        server = shutil.which("redis-server")
        if not server:
            raise RuntimeError("redis-server is missing: apt-get install redis-server "
                               "(scripts/system-deps.sh)")
        port = free_port()
        self.redis = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL)
        self.omerodir = bed.root / "omerodir-redis"
        config = cluster_config(bed.server, bed.world, bed.root / "var", free_port(),
                                broker={"redis": {"host": "127.0.0.1", "port": port, "db": 0},
                                        "name": "storagemanager-redis"})
        config["omero.web.storagemanager.concurrency"] = {"scan": 2, "archive": 2}
        write_config(self.omerodir, config)
        self.clusters = [Cluster(self.omerodir, bed.root / f"redis-cluster{i}.log")
                         for i in range(n)]

    def close(self):
        for cluster in self.clusters:
            cluster.stop()
        self.redis.terminate()
        self.redis.wait(10)


def trial_clusters(bed, rc, rng, index, others=3):
    from omero_storagemanager.engine.locations import add_location
    from omero_storagemanager.models import Job
    from tests.test_archive_faults import run_cli

    world = bed.world
    keys = sorted(k for k, c in world.truth.collections.items()
                  if c["files"] and not any(f["missing"] or "db_size" in f or f["symlink_target"]
                                            for f in c["files"]))
    mount = bed.root / f"mnt-redis{index}"
    mount.mkdir()
    location = add_location(f"redis disk {index}", "hdd", str(mount), 10**10)
    others = rng.sample([k for k in keys if k != bed.key], others)
    batch = [("archive", bed.key)] * 2 + [("scan", bed.key)] + [("archive", k) for k in others]
    rng.shuffle(batch)
    trial = Trial("clusters", "batch " + ", ".join(f"{v} {k}" for v, k in batch))
    before = {k: world.primaries(k) for k in {bed.key, *others}}
    known = set(Job.objects.values_list("pk", flat=True))
    for verb, key in batch:
        args = ["jobs", "submit", verb, key] + (
            ["--location", str(location.pk)] if verb == "archive" else ["--mode", "stat"])
        proc = run_cli(rc.omerodir, *args, timeout=60)
        expect(trial, proc.returncode == 0, f"jobs submit: {proc.stderr[-300:]}")
        time.sleep(round(rng.uniform(0, 0.4), 2))
    jobs = list(Job.objects.exclude(pk__in=known).order_by("pk"))
    expect(trial, len(jobs) == len(batch), f"{len(jobs)} jobs for {len(batch)} submitted")
    ended = [poll_job(j.pk, lambda x: x.state in (Job.DONE, Job.FAILED, Job.CANCELLED),
                      JOB_BOUND) for j in jobs]
    groups, by_collection = set(), {}
    for job in ended:
        expect(trial, job.state == Job.DONE, f"job {job.pk} ({job.kind}) {job.state}: {job.error}")
        log = Path(job.log_dir, "job.log").read_text() if job.log_dir else ""
        why = " | ".join(line[20:] for line in log.splitlines()
                         if "attempt " in line or "waiting" in line)[:400]
        expect(trial, job.attempts == 1 and log.count("attempt ") == 1,
               f"job {job.pk} ({job.kind}) ran {job.attempts} times: {why}")
        if job.worker:
            try:
                groups.add(os.getpgid(int(job.worker.rsplit(":", 1)[1])))
            except (ProcessLookupError, ValueError):
                pass
        for c in job.collections.all():
            by_collection.setdefault(c.key, []).append(job)
    for key, js in by_collection.items():
        js = [j for j in js if j.started and j.finished]
        for i, a in enumerate(js):
            for b in js[i + 1:]:
                expect(trial, a.finished <= b.started or b.finished <= a.started,
                       f"jobs {a.pk} and {b.pk} ran on {key} at the same time")
    for key in before:
        expect(trial, verified_copies(world, key, location) == 1,
               f"{key}: {verified_copies(world, key, location)} verified copies")
        counted_loss(trial, world, key, before[key])
    cluster_of = {c.proc.pid for c in rc.clusters}
    trial.extra["clusters_used"] = len(groups & cluster_of)
    spans = [j for j in ended if j.started and j.finished]
    if spans:
        trial.extra["span"] = round((max(j.finished for j in spans)
                                     - min(j.created for j in spans)).total_seconds(), 1)
    trial.outcome = (f"{sum(j.state == Job.DONE for j in ended)}/{len(ended)} done, each once; "
                     f"{len(groups & cluster_of)} cluster(s) took jobs")
    log_line = f" (all ended {trial.extra.get('span')}s after the first was submitted)"
    trial.outcome += log_line if "span" in trial.extra else ""
    return trial


# -- archive, purge and restore racing ------------------------------------------------------------

def trial_race(server, rng, index, root, name, variant):
    from omero_storagemanager.models import Collection, PurgedFile
    from tests.reliability.matrix import count_lost
    from tests.test_archive_faults import many_files

    world = fresh_world(server, name, root)
    try:
        key = world.key_where(many_files)
        before = world.primaries(key)
        location = world.location("hdd")
        omerodir = world.omerodir(root / "omerodir", copy_workers=2)
        offset = round(rng.uniform(0, 0.4), 2)  # each runs about a second: they overlap
        first_verb, second_verb = variant.split(" vs ")
        if rng.random() < 0.5:
            first_verb, second_verb = second_verb, first_verb
        trial = Trial("race", f"{variant}: {first_verb} first, {second_verb} {offset}s later")
        if variant != "archive vs purge":
            world.archive(key, location)
        if variant == "archive vs restore":
            world.purge(key)

        def args(verb):
            return (verb, key, "--quiet") if verb == "archive" else (verb, key)

        results = both(start(omerodir, *args(first_verb)), args(second_verb), offset, omerodir)
        verdicts = [verdict(a[0], code, out, err) for a, code, out, err in results]
        trial.extra["verdicts"] = verdicts
        for v in verdicts:
            expect(trial, v in ("won", "refused", "nothing to do"), f"unexpected: {v}")
        if variant == "archive vs restore" and verdicts[[first_verb, second_verb].index(
                "archive")] == "won":
            # After the restore, files OMERO keeps no SHA1 of (Pixels/, some originals) are
            # back with a new mtime: the archive takes them for changed and copies them again
            # in an incremental copy (safe; costs space).
            from omero_storagemanager.models import Copy

            newest = Copy.objects.filter(collection=world.collection(key)).order_by(
                "-created").first()
            trial.extra["recopied"] = newest.files if newest and newest.parent_id else 0
        refused = verdicts.count("refused")
        trial.extra["overlapped"] = bool(refused)
        counted_loss(trial, world, key, before)
        # Settle: whatever was purged comes back whole.
        if PurgedFile.objects.filter(collection=world.collection(key)).exclude(
                state=PurgedFile.RESTORED).exists():
            world.restore(key)
        n, notes = count_lost(before)
        trial.lost += n
        trial.violations += [f"after the final restore: {x}" for x in notes]
        expect(trial, world.collection(key).state in (Collection.ARCHIVED, Collection.ONLINE),
               f"collection {world.collection(key).state} at the end")
        trial.outcome = f"{first_verb} {verdicts[0]}, {second_verb} {verdicts[1]}"
        return trial
    finally:
        close_world(server, world, name)


# -- the part ---------------------------------------------------------------------------------

def plan(trials, seed):
    rng = random.Random(seed)
    out = {}
    for cls, variants in (("cli", [None]), ("queue", ["two jobs", "job and console"]),
                          ("clusters", [None]), ("race", list(RACES))):
        seq = []
        while len(seq) < trials:
            round_ = list(variants)
            rng.shuffle(round_)
            seq += round_
        out[cls] = [(v, rng.randrange(2**31)) for v in seq[:trials]]
    return out


def run_part(server, trials, seed, classes=tuple(CLASSES), log=print, schedule=None,
             bed_files=BED_FILES, others=3):
    """Every trial; returns (trials by class, seconds). schedule: {class: [(variant,
    trial seed), ...]} instead of plan(trials, seed)."""
    started = time.monotonic()
    results = {c: [] for c in CLASSES}
    schedule = schedule or plan(trials, seed)
    classes = [c for c in classes if schedule.get(c)]
    workdir = Path(tempfile.mkdtemp(prefix="sm-concurrency-"))
    workdir.chmod(0o755)

    def note(cls, i, t):
        results[cls].append(t)
        log(f"{cls:8s} {i:2d} {t.seconds:5.1f}s lost={t.lost} violations={len(t.violations)} "
            f"{t.variant}: {t.outcome}"
            + ("" if not t.violations else "  !! " + "; ".join(t.violations[:3])))

    def guarded(cls, variant, fn):
        t0 = time.monotonic()
        try:
            t = fn()
        except Exception as e:  # noqa: BLE001 - a trial that crashes is a violation
            t = Trial(cls, str(variant), violations=[f"trial error: {type(e).__name__}: {e}"])
        t.seconds = time.monotonic() - t0
        return t

    try:
        if "cli" in classes:
            root = workdir / "cli"
            root.mkdir()
            name = f"cc_cli_{seed}"
            world = fresh_world(server, name, root)
            try:
                omerodir = world.omerodir(root / "omerodir", copy_workers=2)
                for i, (_, s) in enumerate(schedule["cli"]):
                    note("cli", i, guarded("cli", None, lambda: trial_cli(
                        world, random.Random(s), i, omerodir)))
            finally:
                close_world(server, world, name)
        if "race" in classes:
            for i, (variant, s) in enumerate(schedule["race"]):
                root = workdir / f"race{i}"
                root.mkdir()
                note("race", i, guarded("race", variant, lambda: trial_race(
                    server, random.Random(s), i, root, f"cc_race_{seed}_{i}", variant)))
        if "queue" in classes or "clusters" in classes:
            root = workdir / "jobs"
            root.mkdir()
            bed = JobBed(server, root, f"cc_jobs_{seed}", files=bed_files,
                         cluster="queue" in classes)
            try:
                if "queue" in classes:
                    for i, (variant, s) in enumerate(schedule["queue"]):
                        note("queue", i, guarded("queue", variant, lambda: trial_queue(
                            bed, random.Random(s), i, variant)))
                if bed.cluster is not None:
                    bed.cluster.stop()  # the Redis clusters alone from here
                    bed.cluster = None
                if "clusters" in classes:
                    rc = RedisClusters(bed)
                    try:
                        for i, (_, s) in enumerate(schedule["clusters"]):
                            note("clusters", i, guarded("clusters", None, lambda: trial_clusters(
                                bed, rc, random.Random(s), i, others)))
                    finally:
                        rc.close()
            finally:
                bed.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, time.monotonic() - started


def summarise(cls, ts):
    if not ts:
        return "not run"
    counts = {}
    for t in ts:
        counts[t.outcome] = counts.get(t.outcome, 0) + 1
    text = "; ".join(f"{n}x {o}" for o, n in sorted(counts.items(), key=lambda x: -x[1]))
    if cls == "clusters":
        both_used = sum(1 for t in ts if t.extra.get("clusters_used") == 2)
        text = (f"{sum(1 for t in ts if not t.violations)}/{len(ts)} batches: every job done "
                f"exactly once, no two jobs on one collection at a time, one verified copy "
                f"per collection; both clusters took jobs in {both_used}/{len(ts)} batches")
    if cls in ("queue",):
        reasons = sorted({r for t in ts for r in t.extra.get("reasons", [])})
        if reasons:
            shapes = sorted({re.sub(r"job \d+", "job N", r) for r in reasons})
            text += "; reasons given: " + " | ".join(shapes[:3])
    recopied = [t.extra["recopied"] for t in ts if t.extra.get("recopied")]
    if recopied:
        text += (f"; an archive right after a restore re-copied {min(recopied)}-"
                 f"{max(recopied)} file(s) in an incremental copy in {len(recopied)} trial(s): "
                 "the restore gives files back with a new mtime, and files OMERO keeps no "
                 "SHA1 of are compared by mtime (safe, costs space)")
    bad = sum(1 for t in ts if t.violations)
    if bad:
        text += f"; {bad} trial(s) broke a rule"
    return text


def result_for(results, seed, trials, elapsed, command):
    rows, violations, total, lost = [], [], 0, 0
    for cls, label in CLASSES.items():
        ts = results.get(cls, [])
        n_lost = sum(t.lost for t in ts)
        overlapped = sum(1 for t in ts if "refused" in t.outcome or t.extra.get("waited"))
        rows.append([label, len(ts), overlapped if cls != "clusters" else "-", n_lost,
                     summarise(cls, ts)])
        total += len(ts)
        lost += n_lost
        for t in ts:
            violations += [f"{label}, {t.variant}: {v}" for v in t.violations]
    intro = (
        "Each trial starts two requests on one collection a seeded random offset apart and "
        "checks that exactly one works on it at a time: the other is refused with a reason "
        f"(the per-collection advisory lock: \"{BUSY}\"), or, as a queued job, waits with a "
        "reason and then runs, or runs after the first and finds nothing left to do. The "
        "console-script trials use a Screen of 438 files (offsets 0-1.2 s); the queue "
        f"trials a collection with {BED_FILES:,} files added on one django-q2 cluster (ORM broker, two workers), "
        "the second request a job or the console script; the two-cluster trials submit a "
        "seeded batch with `omero-storagemanager jobs submit` (the same collection archived "
        "twice and scanned, three other collections archived) to two clusters sharing one "
        "Redis. The races start archive and purge (not yet archived), purge and restore "
        "(archived), or archive and restore (purged), either first, 0-0.4 s apart; afterwards anything "
        "purged is restored and compared with the original. \"Overlapped\": trials in "
        "which the second was refused or had to wait. Data lost: primary files gone "
        "without a purge record or changed, copies counted verified that do not match "
        "their manifest, files deleted without a verified copy of their content. "
        f"Seed {seed}, {trials} trial(s) per class, wall time {elapsed:.0f} s.")
    notes = [
        "A request that starts after the other has finished is not a conflict: it runs and "
        "finds its work done (\"nothing to do\") or does its own (a purge after an archive).",
        "Refusal is immediate for the console script (exit 1, one line); a job refused by "
        "the lock waits and is looked at again (WAITING, rechecked by the monitor).",
    ]
    return {"part": PART, "order": ORDER, "title": TITLE, "command": command,
            "intro": intro, "trials": total, "lost": lost,
            "columns": ["case", "trials", "overlapped", "data lost", "what the system did"],
            "rows": rows, "violations": violations, "notes": notes}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS, help="trials per class")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    command = ".venv/bin/python -m tests.reliability.concurrency" + (
        f" --trials {args.trials}" if args.trials != DEFAULT_TRIALS else "") + (
        f" --seed {args.seed}" if args.seed != 1 else "")
    from tests.reliability.report import conclude, record, with_test_bed

    def run(server):
        results, elapsed = run_part(server, args.trials, args.seed,
                                    log=lambda s: print(s, flush=True))
        result = result_for(results, args.seed, args.trials, elapsed, command)
        record(result)
        return result

    return conclude(with_test_bed(run))


if __name__ == "__main__":
    sys.exit(main())

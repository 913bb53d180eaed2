"""Storage and database faults, caused for real, counted per fault class (issue 7).

Each trial generates a fresh facility (its own OMERO-shaped database and repository on
the run's embedded PostgreSQL), causes one fault for real and counts what was lost:

  archive location full     the location is a tmpfs of a seeded size smaller than the
                            collection (the kernel answers ENOSPC); then grown, re-run;
  location unmounted        <mount>/<id> renamed away after a seeded number of verified
                            files, from the engine's progress hook; then put back, re-run;
  read-only location        the location's tmpfs remounted read-only (the kernel answers
                            EROFS) before the archive (console script) or after a seeded
                            number of files (engine); then remounted rw, re-run;
  bit flipped in a copy     one seeded bit of one payload file of an archive copy flipped:
                            with a second copy or without, audited before the purge or
                            not; `omero-storagemanager audit` must report it, a restore
                            must refuse that copy and take the good one, or refuse
                            clearly when there is none;
  OMERO database away       the scan's OMERO database session (`omero-storagemanager scan
                            --mode stat|verify`) terminated by pg_terminate_backend while
                            it waits in a query on a seeded table (held by an ACCESS
                            EXCLUSIVE lock, so the cut lands mid-scan), then re-run;
  app database restarting   an archive job on a real django-q2 cluster (ORM broker on the
                            app database); once it verified a seeded number of files,
                            every app-database backend is terminated, or the whole
                            PostgreSQL server is stopped and started again after a seeded
                            pause; the job must end done (resumed) or failed with a reason.

The classes already covered by tests/test_archive_faults.py (disk full, unmounted,
permission denied, file changed while copied) also run here, as pytest in a subprocess,
and are folded in as trials of their rows.

Counted per trial ("data lost"): primary files gone without a purge record or changed;
copies counted verified that do not match their manifest; files deleted without a
verified copy of their content (tests/reliability/matrix.py's counters).

Full run (writes docs/reliability/faults.json and re-renders docs/reliability.md):
    .venv/bin/python -m tests.reliability.faults
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
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PART = "faults"
ORDER = 20
TITLE = "Storage and database faults"
DEFAULT_TRIALS = 6  # per fault class
DEFAULT_REPEATS = 2  # runs of the tests/test_archive_faults.py subset
APP_DB = "omeroweb_app"
APPDB_FILES = 3000  # files added to the app-database trials' collection
JOB_BOUND = 180  # seconds an archive job may take to end after the app database came back
FAULT_TESTS = {  # pytest -k expression -> fault class (tests/test_archive_faults.py)
    "disk_full": "full",
    "unmounted": "unmounted",
    "permission": "permission",
    "changed_while": "changed",
}
CLASSES = {  # key: (row label, what the new seeded trials do)
    "full": "archive location full (tmpfs, kernel ENOSPC)",
    "unmounted": "location unmounted mid-job",
    "permission": "permission denied (location, then a primary file)",
    "changed": "primary file modified while copied",
    "readonly": "read-only location (tmpfs remounted ro, kernel EROFS)",
    "bitflip": "bit flipped in an archive copy",
    "omerodb": "OMERO database gone mid-scan (backend terminated)",
    "appdb": "app database restarting mid-job (django-q2 cluster)",
}
SEEDED = ("full", "unmounted", "readonly", "bitflip", "omerodb", "appdb")


@dataclass
class Trial:
    cls: str
    variant: str
    lost: int = 0
    violations: list = field(default_factory=list)
    outcome: str = ""  # what the system did, short
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class Needs(RuntimeError):
    """Something the part needs from the machine is missing (root, mount, ...)."""


# -- the machine ---------------------------------------------------------------------------

def run(argv, check=True):
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode:
        raise Needs(f"`{' '.join(map(str, argv))}` failed ({proc.stderr.strip()}); this part "
                    "runs as root on a machine that allows tmpfs mounts")
    return proc


def mount_tmpfs(path, size):
    Path(path).mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)])


def umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path, options, tries=2000):
    """mount -o remount,<options>; a read-only remount is refused (EBUSY) while a file is
    open for writing: try again between files, up to `tries` times."""
    for _ in range(tries):
        proc = run(["mount", "-o", f"remount,{options}", str(path)], check=False)
        if not proc.returncode:
            return
        time.sleep(0.001)
    raise Needs(f"mount -o remount,{options} {path} kept failing: {proc.stderr.strip()}")


def is_read_only(path):
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


# -- worlds ----------------------------------------------------------------------------------

def install_monitor_schedule():
    """The monitor schedule of migration 0004 (truncating django_q's tables drops it)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="storagemanager:monitor",
        defaults={"func": "omero_storagemanager.tasks.monitor.monitor",
                  "schedule_type": "I", "minutes": 1, "repeats": -1})


def fresh_world(server, name, root):
    """Empty app tables (as at installation), then a new facility named `name`."""
    from tests.reliability.matrix import truncate_app_tables
    from tests.test_archive_faults import FaultWorld

    truncate_app_tables()
    install_monitor_schedule()
    server.drop_database(name)
    return FaultWorld(server, name, root)


def close_world(server, world, name):
    try:
        world.conn.close()
    except Exception:  # noqa: BLE001 - a restarted server closed it already
        pass
    server.drop_database(name)


def reconnect_world(world):
    import psycopg2

    try:
        world.conn.close()
    except Exception:  # noqa: BLE001
        pass
    world.conn = psycopg2.connect(world.dsn)
    world.conn.set_session(readonly=True, autocommit=True)


def counted_loss(trial, world, key, before, purge_rows=()):
    """Add the matrix's counters to the trial: lost, corrupt copies, unsafe deletions."""
    from tests.reliability.matrix import count_corrupt_copies, count_lost, count_unsafe

    n1, notes1, rows = count_unsafe(world, key, before)
    n2, notes2 = count_corrupt_copies(world, key)
    n3, notes3 = count_lost(before, purge_rows or rows)
    trial.lost += n1 + n2 + n3
    for note in notes1 + notes2 + notes3:
        trial.violations.append(f"data: {note}")


def expect(trial, condition, message):
    if not condition:
        trial.violations.append(message)
    return condition


def verified_copies(world, key, location=None):
    from omero_storagemanager.models import Copy

    copies = Copy.objects.filter(collection=world.collection(key), state=Copy.VERIFIED)
    if location is not None:
        copies = copies.filter(location=location)
    return copies.count()


def whole_copy(trial, world, key, location):
    from tests.test_archive_faults import assert_whole_copy

    try:
        assert_whole_copy(world, key, location)
        return True
    except Exception as e:  # noqa: BLE001 - counted, not raised
        trial.violations.append(f"re-run left no whole copy: {type(e).__name__}: {e}")
        return False


TRAILER = re.compile(r"CommandError: [\w-]+ found problems \(exit \d+\)$")


def one_clear_line(text):
    """The console script's failure is one line saying what went wrong (its last line
    may be the command's own "CommandError: VERB found problems (exit N)"), never a
    traceback."""
    text = (text or "").strip()
    lines = [line for line in text.splitlines() if line.strip() and not TRAILER.match(line)]
    return "Traceback" not in text and len(lines) == 1


# -- archive location full ---------------------------------------------------------------------

def trial_full(server, rng, index, root, name):
    """A tmpfs smaller than the collection: ENOSPC from the kernel, then room made."""
    from omero_storagemanager.engine.archive import ArchiveError, archive_collection
    from omero_storagemanager.engine.locations import add_location
    from tests.test_archive import _quiet
    from tests.test_archive_faults import (assert_not_archived, assert_payload_trustworthy,
                                           complete_bags, many_files)

    world = fresh_world(server, name, root)
    mount = root / "mnt-full"
    try:
        key = world.key_where(many_files)
        before = world.primaries(key)
        total = sum(os.path.getsize(p) for p in before)
        size = rng.randrange(64, int(total * 0.9) // 4096) * 4096  # pages, below the total
        workers = rng.choice((1, 2, 4))
        trial = Trial("full", f"{size // 1024} KiB disk for {total // 1024} KiB, "
                              f"{workers} copy worker(s)")
        mount_tmpfs(mount, str(size))
        location = add_location("small disk", "hdd", str(mount), 10**9, current=True)
        try:
            archive_collection(world.conn, world.paths, world.collection(key), location,
                               workers=workers, log=_quiet)
            trial.violations.append("the archive succeeded on a disk too small for it")
        except ArchiveError as e:
            message = str(e)
            expect(trial, "No space left on device" in message,
                   f"the error does not say the disk is full: {message}")
            expect(trial, "primary files are untouched" in message,
                   f"the error does not say the primaries are untouched: {message}")
        try:
            assert_not_archived(world, key)
            assert not complete_bags(location), "a bag looks complete"
            assert_payload_trustworthy(world, location)
        except AssertionError as e:
            trial.violations.append(f"after ENOSPC: {e}")
        counted_loss(trial, world, key, before)
        remount(mount, "size=64m")  # the admin makes room
        result = world.archive(key, location)
        expect(trial, result.state == "archived", f"re-run: {result.state}")
        whole_copy(trial, world, key, location)
        counted_loss(trial, world, key, before)
        trial.outcome = "ArchiveError 'No space left on device', nothing verified; re-run after " \
                        "making room completed the copy"
        return trial
    finally:
        umount(mount)
        close_world(server, world, name)


# -- location unmounted mid-job -----------------------------------------------------------------

def trial_unmounted(server, rng, index, root, name):
    from omero_storagemanager.backends.base import LocationError
    from omero_storagemanager.engine.archive import ArchiveError, archive_collection
    from omero_storagemanager.models import CopyFile
    from tests.test_archive import _quiet
    from tests.test_archive_faults import (UnplugAfter, assert_not_archived,
                                           assert_payload_trustworthy, many_files)

    world = fresh_world(server, name, root)
    try:
        key = world.key_where(many_files)
        before = world.primaries(key)
        n = rng.randrange(1, len(before) - 1)
        hold = rng.choice((0, 0.1, 0.3))
        workers = rng.choice((1, 2))
        trial = Trial("unmounted", f"after {n}/{len(before)} files, main thread held {hold}s, "
                                   f"{workers} copy worker(s)")
        location = world.location("hdd", name="Disk U")
        id_dir = os.path.join(location.mount, str(location.pk))
        try:
            archive_collection(world.conn, world.paths, world.collection(key), location,
                               workers=workers, progress=UnplugAfter(n, id_dir, hold),
                               log=_quiet)
            trial.violations.append("the archive succeeded with its disk gone")
        except (ArchiveError, LocationError) as e:
            expect(trial, "Disk U" in str(e) and id_dir in str(e),
                   f"the error does not name the location: {e}")
        expect(trial, os.listdir(location.mount) == [f"{location.pk}.away"],
               f"something was written on the bare mount point: {os.listdir(location.mount)}")
        os.rename(id_dir + ".away", id_dir)  # the disk is back
        try:
            assert_not_archived(world, key)
            assert_payload_trustworthy(world, location)
        except AssertionError as e:
            trial.violations.append(f"after the unmount: {e}")
        rows = CopyFile.objects.filter(copy__location=location).count()
        counted_loss(trial, world, key, before)
        result = world.archive(key, location)
        expect(trial, result.state == "archived", f"re-run: {result.state}")
        whole_copy(trial, world, key, location)
        counted_loss(trial, world, key, before)
        trial.outcome = "clear error naming the disk, nothing written on the bare mount " \
                        "point; re-run resumed the copy"
        trial.extra["kept"] = rows
        return trial
    finally:
        close_world(server, world, name)


# -- read-only location -----------------------------------------------------------------------------

def _remount_ro_after(n, mount):
    """The engine's progress reporter: after `n` verified files, remount the location's
    tmpfs read-only (retried between files: refused while a file is open for writing)."""
    from omero_storagemanager.engine.progress import NullProgress

    class RemountReadOnlyAfter(NullProgress):
        def __init__(self):
            self.seen, self.remounted = 0, False

        def advance(self, items=1, files=0, nbytes=0):
            self.seen += files
            if self.seen >= n and not self.remounted:
                remount(mount, "ro")
                self.remounted = True

    return RemountReadOnlyAfter()


def trial_readonly(server, rng, index, root, name, variant=None):
    from omero_storagemanager.engine.archive import ArchiveError, archive_collection
    from omero_storagemanager.engine.locations import add_location
    from tests.test_archive import _quiet
    from tests.test_archive_faults import (assert_not_archived, assert_payload_trustworthy,
                                           complete_bags, many_files, run_cli)

    world = fresh_world(server, name, root)
    mount = root / "mnt-ro"
    try:
        key = world.key_where(many_files)
        before = world.primaries(key)
        variant = variant or rng.choice(("before", "mid-job"))
        mount_tmpfs(mount, "64m")
        location = add_location("ro disk", "hdd", str(mount), 10**9, current=True)
        if variant == "before":
            trial = Trial("readonly", "remounted ro before the archive (console script)")
            remount(mount, "ro")
            expect(trial, is_read_only(mount), "the remount did not make the disk read-only")
            omerodir = world.omerodir(root / "omerodir")
            proc = run_cli(omerodir, "archive", key, "--quiet")
            err = proc.stderr.strip()
            expect(trial, proc.returncode == 1, f"exit {proc.returncode}, not 1: {err[-300:]}")
            expect(trial, one_clear_line(err), f"not one clear line: {err[-500:]}")
            expect(trial, "Read-only file system" in err, f"EROFS not named: {err[-300:]}")
            said = err
        else:
            n = rng.randrange(1, len(before) - 20)
            trial = Trial("readonly", f"remounted ro after {n}/{len(before)} files (engine)")
            hook = _remount_ro_after(n, mount)
            said = ""
            try:
                archive_collection(world.conn, world.paths, world.collection(key), location,
                                   workers=2, progress=hook, log=_quiet)
                trial.violations.append("the archive succeeded on a read-only disk")
            except ArchiveError as e:
                said = str(e)
                expect(trial, "Read-only file system" in said, f"EROFS not named: {said}")
                expect(trial, "primary files are untouched" in said,
                       f"the error does not say the primaries are untouched: {said}")
            expect(trial, hook.remounted and is_read_only(mount), "the disk never became read-only")
        try:
            assert_not_archived(world, key)
            assert not complete_bags(location), "a bag looks complete"
            assert_payload_trustworthy(world, location)
        except AssertionError as e:
            trial.violations.append(f"on the read-only disk: {e}")
        counted_loss(trial, world, key, before)
        remount(mount, "rw")
        result = world.archive(key, location)
        expect(trial, result.state == "archived", f"re-run: {result.state}")
        whole_copy(trial, world, key, location)
        counted_loss(trial, world, key, before)
        trial.outcome = "clear 'Read-only file system' error, nothing verified, primary " \
                        "untouched; re-run after remounting rw completed"
        trial.extra["message"] = said[:200]
        return trial
    finally:
        umount(mount)
        close_world(server, world, name)


# -- a bit flipped in an archive copy -----------------------------------------------------------

BITFLIP_VARIANTS = (
    "two copies, audit, purge, restore",
    "two copies, purge, flip, restore (no audit)",
    "one copy, purge, flip, restore",
    "one copy, flip, audit, purge",
)


def flip_bit(path, rng):
    size = os.path.getsize(path)
    offset = rng.randrange(size)
    bit = rng.randrange(8)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))
        f.flush()
        os.fsync(f.fileno())
    return offset, bit


def bag_file(copy, relpath):
    return copy.location.backend().write_root / copy.bag_path / "data" / relpath


def trial_bitflip(server, rng, index, root, name, variant=None):
    from omero_storagemanager.engine.restore import RestoreError
    from omero_storagemanager.models import Collection, Copy, CopyFile, PurgedFile
    from tests.test_archive_faults import TMP_SUFFIX, clean, run_cli, sha1

    world = fresh_world(server, name, root)
    try:
        keys = [k for k, c in world.truth.collections.items()
                if clean(c) and len(c["files"]) >= 3]
        key = rng.choice(sorted(keys))
        before = world.primaries(key)
        variant = variant or rng.choice(BITFLIP_VARIANTS)
        two = variant.startswith("two")
        trial = Trial("bitflip", f"{key}: {variant}")
        omerodir = world.omerodir(root / "omerodir")
        first = world.location("hdd", name="Disk A")
        world.archive(key, first)
        if two:
            second = world.location("hdd", name="Disk B")
            world.archive(key, second)
        bad_copy = Copy.objects.get(collection=world.collection(key), location=first)
        rows = list(CopyFile.objects.filter(copy=bad_copy, size__gt=0).order_by("relpath"))
        victim = rng.choice(rows)
        primary = os.path.join(world.paths.data_dir, victim.relpath)
        trial.variant += f"; {victim.relpath}"

        def flip():
            offset, bit = flip_bit(bag_file(bad_copy, victim.relpath), rng)
            trial.extra["flip"] = f"byte {offset} bit {bit}"

        def audit_reports():
            proc = run_cli(omerodir, "audit")
            out = proc.stdout + proc.stderr
            expect(trial, proc.returncode == 1, f"audit exit {proc.returncode}, not 1: {out[-300:]}")
            expect(trial, f"{victim.relpath}: checksum mismatch" in out,
                   f"audit does not name the flipped file: {out[-400:]}")
            expect(trial, "Traceback" not in out, f"audit crashed: {out[-400:]}")
            bad_copy.refresh_from_db()
            expect(trial, bad_copy.state == Copy.FAILED_AUDIT,
                   f"the damaged copy is {bad_copy.state} after the audit")
            return proc.returncode == 1

        if variant == "two copies, audit, purge, restore":
            flip()
            audit_reports()
            world.purge(key)
            expect(trial, not os.path.lexists(primary), "the purge kept the flipped file's "
                   "primary although a good copy exists")
            result = world.restore(key)
            expect(trial, world.primaries(key) == before, "restore: not all files back identical")
            expect(trial, world.collection(key).state == Collection.ARCHIVED,
                   f"collection {world.collection(key).state} after the restore")
            trial.outcome = "audit exit 1 naming the file, copy marked failed; purge and " \
                            "restore used the good copy"
        elif variant == "two copies, purge, flip, restore (no audit)":
            world.purge(key)
            flip()
            result = world.restore(key)
            refused = [p for p in result.problems if victim.relpath in p]
            expect(trial, refused and "does not match its recorded checksum" in refused[0],
                   f"the restore did not refuse the damaged copy: {result.problems}")
            expect(trial, world.primaries(key) == before, "restore: not all files back identical")
            audit_reports()
            trial.outcome = "restore refused the damaged copy (checksum) and took the good " \
                            "one; audit afterwards exit 1 naming the file"
        elif variant == "one copy, purge, flip, restore":
            world.purge(key)
            counted_loss(trial, world, key, before)  # the purge was safe when it ran
            flip()
            proc = run_cli(omerodir, "restore", key)
            err = proc.stderr.strip()
            expect(trial, proc.returncode == 1, f"restore exit {proc.returncode}, not 1")
            expect(trial, one_clear_line(err) and "no usable verified copy" in err
                   and primary in err, f"not one clear error naming the file: {err[-400:]}")
            expect(trial, not os.path.lexists(primary) and not os.path.lexists(primary + TMP_SUFFIX),
                   "something was left at the damaged file's path")
            expect(trial, PurgedFile.objects.get(path=primary).state == PurgedFile.PURGED,
                   "the damaged file's purge record no longer says purged")
            expect(trial, world.collection(key).state != Collection.ARCHIVED,
                   "the collection counts as restored")
            for path, (digest, _) in before.items():
                if path != primary and os.path.lexists(path) and sha1(path) != digest:
                    trial.violations.append(f"{path} restored but not whole")
            audit_reports()
            trial.extra["unrecoverable"] = 1
            trial.outcome = "restore exit 1, one line naming the file (no usable verified " \
                            "copy), nothing half-written; the others back whole; audit " \
                            "marks the copy failed (the only copy was damaged: that file " \
                            "cannot come back)"
        else:  # one copy, flip, audit, purge
            flip()
            audit_reports()
            plan = world.purge(key)
            expect(trial, not plan.freed and os.path.exists(primary),
                   f"the purge freed {len(plan.freed)} file(s) relying on a failed copy")
            expect(trial, world.primaries(key) == before, "a primary changed")
            result = world.archive(key, first)  # archive again: a new whole copy
            expect(trial, result.state == "archived", f"re-archive: {result.state}")
            good = Copy.objects.get(pk=result.copy_id)
            expect(trial, sha1(bag_file(good, victim.relpath)) == victim.checksum,
                   "the new copy is not whole")
            trial.outcome = "audit exit 1, copy marked failed; the purge freed nothing; " \
                            "archiving again made a new verified copy"
        if variant == "one copy, purge, flip, restore":
            # The storage destroyed the only copy after a safe purge: the file is reported
            # (extra "unrecoverable"); the rest must be back whole and no copy counted good.
            from tests.reliability.matrix import count_corrupt_copies, count_lost

            n1, notes1 = count_lost(before, {primary})
            n2, notes2 = count_corrupt_copies(world, key)
            trial.lost += n1 + n2
            trial.violations += [f"data: {x}" for x in notes1 + notes2]
        else:
            counted_loss(trial, world, key, before)
        return trial
    except RestoreError as e:
        trial.violations.append(f"restore refused although a good copy exists: {e}")
        return trial
    finally:
        close_world(server, world, name)


# -- the OMERO database gone mid-scan ------------------------------------------------------------

LOCKED_TABLES = ("originalfile", "pixels", "image", "wellsample", "annotation")


def scan_backend(server, dbname):
    with server.connect("postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT pid, wait_event_type FROM pg_stat_activity WHERE datname = %s "
                    "AND application_name = 'omero-storagemanager'", [dbname])
        rows = cur.fetchall()
    conn.close()
    return rows


def trial_omerodb(server, rng, index, root, name, variant=None):
    from omero_storagemanager.models import Collection, ScanResult
    from tests.test_archive_faults import cli_env, run_cli, CLI

    world = fresh_world(server, name, root)
    try:
        mode = rng.choice(("stat", "verify"))
        table = rng.choice(LOCKED_TABLES)
        scope = variant or rng.choice(("--all", "keys"))
        pause = round(rng.uniform(0, 0.5), 2)
        trial = Trial("omerodb", f"scan {scope} --mode {mode}, cut while it waits on "
                                 f"{table} (+{pause}s)")
        args = ["scan", "--mode", mode] + (["--all"] if scope == "--all"
                                           else sorted(world.truth.collections))
        omerodir = world.omerodir(root / "omerodir")
        locker = server.connect(name)
        proc = None
        try:
            with locker.cursor() as cur:
                cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            proc = subprocess.Popen([CLI, *args], env=cli_env(omerodir), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 30
            pid = None
            while time.monotonic() < deadline and proc.poll() is None:
                waiting = [p for p, w in scan_backend(server, name) if w == "Lock"]
                if waiting:
                    pid = waiting[0]
                    break
                time.sleep(0.02)
            if pid is None:
                trial.violations.append(f"the scan never waited on {table} (exit {proc.poll()})")
            else:
                time.sleep(pause)
                with server.connect("postgres") as admin, admin.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(%s)", [pid])
                admin.close()
            out, err = proc.communicate(timeout=60)
        finally:
            locker.rollback()
            locker.close()
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
        err = err.strip()
        expect(trial, proc.returncode not in (0, None), f"the scan exited {proc.returncode}")
        expect(trial, one_clear_line(err), f"not one clear error line: {err[-600:]}")
        expect(trial, "OMERO database" in err, f"the error does not name the OMERO database: "
                                               f"{err[-300:]}")
        stored = ScanResult.objects.count()
        scanned = Collection.objects.exclude(scanned_at=None).count()
        expect(trial, stored == 0 and scanned == 0,
               f"stored {stored} scan result(s), {scanned} collection(s) marked scanned")
        trial.extra["error"] = err.splitlines()[-1][:200] if err else ""
        again = run_cli(omerodir, *args, timeout=120)
        n = len(world.truth.collections) if scope == "--all" else len(args) - 3
        expect(trial, again.returncode in (0, 1) and f"{mode} scan of " in again.stdout,
               f"the re-run did not complete: exit {again.returncode} {again.stderr[-300:]}")
        expect(trial, ScanResult.objects.filter(mode=mode).count() == n,
               f"the re-run stored {ScanResult.objects.count()} result(s), not {n}")
        trial.outcome = f"exit {proc.returncode}, one line: "
        trial.outcome += (err.splitlines()[-1][:120] if err else "(nothing)")
        trial.outcome += "; nothing stored; re-run complete"
        return trial
    finally:
        close_world(server, world, name)


# -- the app database restarting while a job runs -------------------------------------------------

class JobBed:
    """One facility with an enlarged collection and one django-q2 cluster (ORM broker on
    the app database) for the app-database trials."""

    def __init__(self, server, root, name, files=3000, cluster=True):
        from tests.test_archive_faults import clean
        from tests.test_jobs import Cluster, cluster_config, enlarge
        from testbed.omerodir import write_config
        from testbed.pg import free_port

        self.server, self.root, self.name = server, root, name
        self.world = fresh_world(server, name, root)
        keys = [k for k, c in self.world.truth.collections.items() if clean(c)]
        self.key = max(keys, key=lambda k: len(self.world.truth.collections[k]["files"]))
        enlarge(self.world, self.key, count=files)
        self.world.truth = _truth_with_disk(self.world, self.key)
        self.before = self.world.primaries(self.key)
        write_config(root / "omerodir", cluster_config(server, self.world, root / "var",
                                                       free_port()))
        self.omerodir = root / "omerodir"
        self.cluster = Cluster(root / "omerodir", root / "qcluster.log") if cluster else None

    def close(self):
        if self.cluster is not None:
            self.cluster.stop()
        close_world(self.server, self.world, self.name)


def _truth_with_disk(world, key):
    """The truth's file list of `key` extended with the files enlarge() added (their
    rows are in the OMERO database; the counters need every file of the collection)."""
    from omero_storagemanager.catalog.inventory import InventoryReader

    inventory = InventoryReader(world.conn, world.paths, True).read(*_parse(key))
    known = {f["path"] for f in world.truth.collections[key]["files"]}
    for record in inventory.files:
        if record.path not in known:
            world.truth.collections[key]["files"].append(
                {"path": record.path, "missing": False, "shared_with": [], "kind": "fileset_entry",
                 "symlink_target": None, "size": os.path.getsize(record.path)})
    return world.truth


def _parse(key):
    from omero_storagemanager.catalog.collections import parse_key

    return parse_key(key)


def app_db_backends(server):
    with server.connect("postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [APP_DB])
        n = cur.fetchone()[0]
    conn.close()
    return n


def terminate_app_db(server):
    with server.connect("postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", [APP_DB])
        n = cur.fetchone()[0]
    conn.close()
    return n


def reset_django_connection():
    from django.db import connection

    try:
        connection.close()
    except Exception:  # noqa: BLE001 - the server closed it already
        connection.connection = None


def poll_job(job_id, until, bound, interval=0.2):
    """The job's row once until(job) holds, or the last row seen when `bound` passes;
    survives the app database going away meanwhile."""
    from omero_storagemanager.models import Job

    deadline = time.monotonic() + bound
    job = None
    while True:
        try:
            job = Job.objects.get(pk=job_id)
            if until(job):
                return job
        except Exception:  # noqa: BLE001 - the database is restarting: look again
            reset_django_connection()
        if time.monotonic() >= deadline:
            return job
        time.sleep(interval)


def trial_appdb(bed, rng, index, variant=None):
    from omero_storagemanager.engine.locations import add_location
    from omero_storagemanager.models import Copy, Job
    from omero_storagemanager.tasks import queue

    world, key, server = bed.world, bed.key, bed.server
    variant = variant or rng.choice(("terminate backends", "restart server"))
    total = len(bed.before)
    at = rng.randrange(50, int(total * 0.8))
    pause = round(rng.uniform(0.0, 3.0), 1) if variant == "restart server" else 0
    trial = Trial("appdb", f"{variant} after {at}/{total} files"
                  + (f", down {pause}s" if pause else ""))
    mount = bed.root / f"mnt-job{index}"
    mount.mkdir()
    location = add_location(f"job disk {index}", "hdd", str(mount), 10**10)
    job = queue.submit("archive", [world.collection(key)], location)
    running = poll_job(job.pk, lambda j: j.state == Job.RUNNING and j.files_done >= at
                       or j.state in (Job.DONE, Job.FAILED), 120, interval=0.02)
    if running is None or running.state != Job.RUNNING:
        trial.violations.append(f"the job never reached {at} files "
                                f"({running and running.state}, {running and running.files_done})")
        trial.outcome = "not under way"
        return trial
    trial.extra["files_at_fault"] = running.files_done
    t0 = time.monotonic()
    if variant == "terminate backends":
        trial.extra["terminated"] = terminate_app_db(server)
    else:
        server.stop()
        time.sleep(pause)
        server.start()
        reconnect_world(world)
    reset_django_connection()
    final = poll_job(job.pk, lambda j: j.state in (Job.DONE, Job.FAILED, Job.CANCELLED),
                     JOB_BOUND)
    seconds = time.monotonic() - t0
    trial.extra["seconds_to_end"] = round(seconds, 1)
    log = Path(final.log_dir, "job.log").read_text() if final.log_dir and \
        Path(final.log_dir, "job.log").exists() else ""
    if final.state == Job.DONE:
        how = "resumed" if final.attempts > 1 else "finished in its first attempt"
        trial.outcome = f"done ({how}, {final.attempts} attempts) {seconds:.0f}s after the fault"
        expect(trial, verified_copies(world, key, location) == 1, "no verified copy")
        whole_copy(trial, world, key, location)
    elif final.state == Job.FAILED:
        expect(trial, bool(final.error.strip()), "failed without a reason")
        trial.outcome = f"failed {seconds:.0f}s after the fault: {final.error[:120]}"
        again = queue.retry(final)
        done = poll_job(again.pk, lambda j: j.state in (Job.DONE, Job.FAILED), JOB_BOUND)
        expect(trial, done.state == Job.DONE, f"the retried job is {done.state}: {done.error}")
        if done.state == Job.DONE:
            trial.outcome += "; retried: done"
            whole_copy(trial, world, key, location)
    else:
        trial.violations.append(f"job still {final.state} {JOB_BOUND}s after the app database "
                                f"came back (attempts {final.attempts}, wait "
                                f"{final.wait_reason!r})")
        trial.outcome = f"stuck {final.state}"
    trial.extra["attempts"] = final.attempts
    trial.extra["resumed_in_log"] = "resuming" in log
    expect(trial, Copy.objects.filter(location=location, state=Copy.VERIFIED).count() <= 1,
           "two verified copies at one location")
    counted_loss(trial, world, key, bed.before)
    return trial


# -- the existing fault tests (tests/test_archive_faults.py) ----------------------------------

def run_fault_tests(repeats, log=print, only=None):
    """Run the fault-class tests of tests/test_archive_faults.py `repeats` times in a
    pytest subprocess (only: a narrower -k expression); returns {class: [Trial, ...]}."""
    out = {c: [] for c in set(FAULT_TESTS.values())}
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMERODIR", "DJANGO_SETTINGS_MODULE", "PYTEST_ADDOPTS",
                        "PYTEST_CURRENT_TEST")}
    expr = only or " or ".join(FAULT_TESTS)
    with tempfile.TemporaryDirectory(prefix="sm-fault-tests-") as tmp:
        for r in range(repeats):
            junit = Path(tmp, f"run{r}.xml")
            started = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 str(REPO / "tests" / "test_archive_faults.py"), "-k", expr,
                 f"--junitxml={junit}"], cwd=str(REPO), env=env, capture_output=True,
                text=True, timeout=900)
            if not junit.exists():
                raise Needs(f"pytest of tests/test_archive_faults.py produced no result "
                            f"(exit {proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}")
            n = 0
            for trial in trials_of(junit, r + 1):
                out[trial.cls].append(trial)
                n += 1
            log(f"tests/test_archive_faults.py run {r + 1}: {n} tests, exit {proc.returncode}, "
                f"{time.monotonic() - started:.0f}s")
    return out


def trials_of(junit, run_number):
    """One Trial per test case of a pytest JUnit XML report; a failed, erroring or
    skipped test is a violation and counts as data lost (it may have lost some)."""
    for case in ET.parse(junit).getroot().iter("testcase"):
        test = case.get("name")
        cls = next(c for k, c in FAULT_TESTS.items() if k in test)
        trial = Trial(cls, f"{test} (run {run_number})", seconds=float(case.get("time", 0)))
        bad = [e for e in case if e.tag in ("failure", "error", "skipped")]
        for e in bad:
            trial.violations.append(f"{test}: {e.tag}: {(e.get('message') or '')[:300]}")
            trial.lost += 1
        trial.outcome = "passed" if not bad else bad[0].tag
        yield trial


# -- the part -----------------------------------------------------------------------------------

def plan(trials, seed):
    """Seeded per-class variant schedules: each class's variants in shuffled rounds."""
    rng = random.Random(seed)
    variants = {"full": [None], "unmounted": [None], "readonly": ["before", "mid-job"],
                "bitflip": list(BITFLIP_VARIANTS), "omerodb": ["--all", "keys"],
                "appdb": ["terminate backends", "restart server"]}
    out = {}
    for cls in SEEDED:
        seq = []
        while len(seq) < trials:
            round_ = list(variants[cls])
            rng.shuffle(round_)
            seq += round_
        out[cls] = [(v, rng.randrange(2**31)) for v in seq[:trials]]
    return out


def run_part(server, trials, seed, repeats, classes=SEEDED, log=print, schedule=None,
             only_tests=None, bed_files=APPDB_FILES):
    """Every seeded trial, then the fault tests; returns (trials by class, seconds).
    schedule: {class: [(variant, trial seed), ...]} instead of plan(trials, seed)."""
    started = time.monotonic()
    results = {c: [] for c in CLASSES}
    schedule = schedule or plan(trials, seed)
    classes = [c for c in classes if schedule.get(c)]
    workdir = Path(tempfile.mkdtemp(prefix="sm-faults-"))
    workdir.chmod(0o755)
    runners = {"full": trial_full, "unmounted": trial_unmounted, "readonly": trial_readonly,
               "bitflip": trial_bitflip, "omerodb": trial_omerodb}
    try:
        for cls in classes:
            if cls == "appdb":
                continue
            for i, (variant, trial_seed) in enumerate(schedule[cls]):
                rng = random.Random(trial_seed)
                root = workdir / f"{cls}{i}"
                root.mkdir()
                t0 = time.monotonic()
                kwargs = {} if variant is None else {"variant": variant}
                try:
                    trial = runners[cls](server, rng, i, root, f"flt_{cls}_{seed}_{i}", **kwargs)
                except Needs:
                    raise
                except Exception as e:  # noqa: BLE001 - a trial that crashes is a violation
                    trial = Trial(cls, str(variant), violations=[f"trial error: "
                                                                 f"{type(e).__name__}: {e}"])
                trial.seconds = time.monotonic() - t0
                results[cls].append(trial)
                log(f"{cls:9s} {i:2d} {trial.seconds:5.1f}s lost={trial.lost} "
                    f"violations={len(trial.violations)} {trial.variant}: {trial.outcome}"
                    + ("" if not trial.violations else "  !! " + "; ".join(trial.violations[:3])))
        if "appdb" in classes:
            root = workdir / "appdb"
            root.mkdir()
            bed = JobBed(server, root, f"flt_appdb_{seed}", files=bed_files)
            try:
                for i, (variant, trial_seed) in enumerate(schedule["appdb"]):
                    t0 = time.monotonic()
                    try:
                        trial = trial_appdb(bed, random.Random(trial_seed), i, variant)
                    except Exception as e:  # noqa: BLE001
                        trial = Trial("appdb", variant, violations=[
                            f"trial error: {type(e).__name__}: {e}"])
                    trial.seconds = time.monotonic() - t0
                    results["appdb"].append(trial)
                    log(f"appdb     {i:2d} {trial.seconds:5.1f}s lost={trial.lost} "
                        f"violations={len(trial.violations)} {trial.variant}: {trial.outcome}"
                        + ("" if not trial.violations else "  !! "
                           + "; ".join(trial.violations[:3])))
            finally:
                bed.close()
        if repeats:
            for cls, ts in run_fault_tests(repeats, log, only_tests).items():
                results[cls] += ts
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results, time.monotonic() - started


def summarise(cls, ts):
    """The 'what the system did' cell of a class."""
    if not ts:
        return "not run"
    seeded = [t for t in ts if not t.variant.startswith("test_")]
    tests = [t for t in ts if t.variant.startswith("test_")]
    parts = []
    bad = sum(1 for t in ts if t.violations)
    if seeded:
        outcomes = {}
        for t in seeded:
            text = t.outcome
            if cls == "omerodb":
                text = text.split(":", 1)[0] + ": " + "OMERO database connection lost"
            if cls == "appdb":
                kind = t.variant.split(" after ")[0]
                if text.startswith("done (resumed"):
                    text = f"{kind}: done, resumed by a second attempt"
                elif text.startswith("done"):
                    text = f"{kind}: done in its first attempt"
                elif text.startswith("failed") and text.endswith("retried: done"):
                    text = f"{kind}: failed with the database error as its reason, a retry done"
                else:
                    text = f"{kind}: {text}"
            outcomes[text] = outcomes.get(text, 0) + 1
        parts.append("; ".join(f"{n}x {o}" for o, n in outcomes.items()))
        if cls == "appdb":
            secs = [t.extra.get("seconds_to_end") for t in seeded if "seconds_to_end" in t.extra]
            if secs:
                parts.append(f"ended {min(secs):.0f}-{max(secs):.0f}s after the fault")
            resumed = sum(1 for t in seeded if t.extra.get("attempts", 1) > 1)
            parts.append(f"resumed by another attempt in {resumed}/{len(seeded)}")
        if cls == "omerodb":
            errors = sorted({t.extra.get("error", "") for t in seeded if t.extra.get("error")})
            if errors:
                parts.append("message e.g. \"" + errors[0][:160] + "\"")
    if tests:
        names = sorted({t.variant.split(" (run")[0] for t in tests})
        passed = sum(1 for t in tests if not t.violations)
        parts.append(f"tests/test_archive_faults.py: {passed}/{len(tests)} passed ("
                     + ", ".join(f"`{n}`" for n in names) + ")")
    if bad:
        parts.append(f"{bad} trial(s) broke a rule")
    return "; ".join(parts)


def result_for(results, seed, trials, repeats, elapsed, command):
    rows, violations, total, lost = [], [], 0, 0
    for cls, label in CLASSES.items():
        ts = results.get(cls, [])
        n_lost = sum(t.lost for t in ts)
        seeded = sum(1 for t in ts if not t.variant.startswith("test_"))
        rows.append([label, len(ts), f"{seeded} seeded + {len(ts) - seeded} test runs",
                     n_lost, summarise(cls, ts)])
        total += len(ts)
        lost += n_lost
        for t in ts:
            for v in t.violations:
                violations.append(f"{label}, {t.variant}: {v}")
    intro = (
        "Each seeded trial generates a fresh facility and causes one fault for real on the "
        "real engine, console script or django-q2 cluster, then counts. Location full: the "
        "location is a tmpfs of a seeded size below the collection's (the kernel answers "
        "ENOSPC), then grown and the archive run again. Unmounted: `<mount>/<id>` renamed "
        "away after a seeded number of verified files. Read-only: the location's tmpfs "
        "remounted read-only before the archive or after a seeded number of files (EROFS). "
        "Bit flip: one seeded bit of one payload file of a copy flipped, with or without a "
        "second copy, audited (`omero-storagemanager audit`) before the purge or not. "
        "OMERO database gone: `omero-storagemanager scan` (stat or verify, all collections "
        "or named ones) has its OMERO database session terminated (pg_terminate_backend) "
        "while it waits in a query on a seeded table. App database restarting: an archive "
        "job of a 3,400-file collection on a real django-q2 cluster (ORM broker on the app "
        "database, a monitor schedule every minute, heartbeat timeout 15 s) has every "
        "app-database backend terminated, or the whole PostgreSQL server stopped and "
        "started again, after a seeded number of files. Permission denied and a file "
        "changed while copied (and fixed cases of the others) are the tests of "
        "tests/test_archive_faults.py, run here in a pytest subprocess "
        f"({repeats} run(s)); a failed test counts as data lost. Data lost: primary files "
        "gone without a purge record or changed, copies counted verified that do not match "
        "their manifest, files deleted without a verified copy of their content. "
        f"Seed {seed}, {trials} seeded trial(s) per class, wall time {elapsed:.0f} s.")
    notes = [
        "A bit flipped in the only copy of a purged file cannot be undone: the restore "
        "refuses it with a clear error and restores the rest; that file is reported, not "
        "counted as lost by the system (its purge had a verified copy at the time).",
        "The app-database trials share one facility and one cluster; each trial archives "
        "to a new location. The restart variant also cuts the OMERO database sessions "
        "(both databases live on the one embedded PostgreSQL server).",
        "Permission denied is only covered by the tests (one case each for the location "
        "and a primary file, the console script run without root's capabilities).",
    ]
    return {"part": PART, "order": ORDER, "title": TITLE, "command": command,
            "intro": intro, "trials": total, "lost": lost,
            "columns": ["fault", "trials", "of which", "data lost", "what the system did"],
            "rows": rows, "violations": violations, "notes": notes}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                        help="seeded trials per fault class")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="runs of the tests/test_archive_faults.py fault tests")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("this part mounts tmpfs and remounts it read-only: run it as root", file=sys.stderr)
        return 2
    command = ".venv/bin/python -m tests.reliability.faults" + (
        f" --trials {args.trials}" if args.trials != DEFAULT_TRIALS else "") + (
        f" --seed {args.seed}" if args.seed != 1 else "") + (
        f" --repeats {args.repeats}" if args.repeats != DEFAULT_REPEATS else "")
    from tests.reliability.report import conclude, record, with_test_bed

    def run(server):
        results, elapsed = run_part(server, args.trials, args.seed,
                                    args.repeats, log=lambda s: print(s, flush=True))
        result = result_for(results, args.seed, args.trials, args.repeats, elapsed, command)
        record(result)
        return result

    return conclude(with_test_bed(run))


if __name__ == "__main__":
    sys.exit(main())

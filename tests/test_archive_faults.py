"""Faults during archive, purge and restore, caused for real (no mock of the engine).

Issue 4, Safety: "Disk full, permission denied, a location unmounted mid-copy, a file
changed during the copy: each ends in a clear error and leaves the primary data
untouched", and "every step is recorded before and after it happens, so a worker killed
at any instant leaves a state that a re-run completes: no lost file, no half-written file
that looks complete, no purge without a verified copy".

How each fault is made (the tests run as root, where root may mount):
  - disk full: the location's mount point is a real 2 MiB tmpfs;
  - permission denied: root bypasses file permissions, so the console script runs
    without the capabilities that bypass them (see UNPRIVILEGED), against a location
    owned by another user, then a primary file of another user, mode 0600;
  - unmounted mid-copy: <mount>/<id> is renamed away while the engine copies, from its
    progress reporter (the engine's own hook), so that it happens after some files and
    while a copy worker is working on the next ones;
  - file changed: a thread appends to a 64 MiB primary as soon as the engine's
    temporary copy of it (`.sm-partial`) appears;
  - kill -9: `omero-storagemanager archive|purge|restore` in a subprocess, SIGKILLed at
    several instants, then run again to completion.
"""
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import bagit
import pytest

from omero_storagemanager.backends.base import LocationError
from omero_storagemanager.engine.archive import ArchiveError, archive_collection
from omero_storagemanager.engine.copyfile import TMP_SUFFIX
from omero_storagemanager.engine.locations import add_location
from omero_storagemanager.engine.progress import NullProgress
from omero_storagemanager.models import Collection, Copy, CopyFile, PurgedFile
from testbed.omerodir import django_db, web_config, write_config
from tests.test_archive import World, _quiet

REPO = Path(__file__).resolve().parent.parent
CLI = shutil.which("omero-storagemanager", path=os.path.dirname(sys.executable))
APP_DB = "omeroweb_app"  # the test run's app database (testbed/fixtures.py)
NOBODY = 65534
WIP_SUFFIXES = (TMP_SUFFIX, ".partial", ".evicting", ".sm-link")


class FaultWorld(World):
    def __init__(self, pg_server, name, root):
        super().__init__(pg_server, name, root)
        self.server = pg_server

    def source(self, relpath):
        return os.path.join(self.paths.data_dir, relpath)

    def primaries(self, key):
        """path -> (sha1, mode) of every file of the collection that is in the
        repository (in-place imports' targets included: they must never change)."""
        out = {}
        for f in self.truth.collections[key]["files"]:
            if not f["missing"]:
                out[f["path"]] = (sha1(f["path"]), stat.S_IMODE(os.stat(f["path"]).st_mode))
        return out

    def omerodir(self, where, **settings):
        """An OMERODIR for the console script: the test run's app database and this
        world's facility; `settings` are omero.web.storagemanager.* keys."""
        write_config(where, web_config(
            app_db=django_db(self.server, APP_DB), omero_db={"dsn": self.dsn},
            data_dir=self.truth.data_dir, managed_dir=self.truth.managed_dir,
            extra={f"omero.web.storagemanager.{k}": str(v) for k, v in settings.items()}))
        return Path(where)


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    name = "flt_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    w = FaultWorld(pg_server, name, tmp_path)
    yield w
    w.conn.close()
    pg_server.drop_database(name)


def sha1(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def many_files(c):
    """The big plate's Screen: hundreds of files, none missing."""
    return len(c["files"]) > 300 and not any(f["missing"] for f in c["files"])


def clean(c):
    """No anomaly, no sharing, no in-place import: fully purgeable."""
    return c["files"] and not any(f["missing"] or "db_size" in f or f["shared_with"]
                                  or f["symlink_target"] for f in c["files"])


def work_in_progress(root):
    """Names under root that are unfinished work: temporary copies, partial bags."""
    found = []
    for top, dirs, names in os.walk(root):
        found += [os.path.join(top, n) for n in dirs + names if n.endswith(WIP_SUFFIXES)]
    return found


def complete_bags(location):
    """Directories holding a bagit.txt outside any work in progress, at a location.

    Polled while an archive runs: a `.partial` folder renamed into place mid-walk makes
    the walk fail, so it is walked again (the archive's rename is one step)."""
    while True:
        try:
            return [p.parent for p in Path(location.mount).rglob("bagit.txt")
                    if not any(part.endswith(WIP_SUFFIXES) for part in p.parts)]
        except FileNotFoundError:
            continue


def assert_not_archived(world, key):
    collection = world.collection(key)
    assert not Copy.objects.filter(collection=collection, state=Copy.VERIFIED).exists()
    assert collection.state == Collection.ONLINE


def assert_payload_trustworthy(world, location):
    """No half-written file looks complete: every payload file under its final name in
    a bag being written is byte-identical to the primary it copies, and every CopyFile
    row of an unfinished copy names such a file."""
    for copy in Copy.objects.filter(location=location, state=Copy.WRITING):
        bag = location.backend().write_root / copy.bag_path
        if not bag.is_dir():  # else finished, not yet marked verified: the same checks
            bag = bag.with_name(bag.name + ".partial")
        data = bag / "data"
        for top, _, names in os.walk(data):
            for name in names:
                if name.endswith(TMP_SUFFIX):
                    continue  # a temporary name: never taken for a copy
                path = Path(top) / name
                rel = str(path.relative_to(data))
                assert sha1(path) == sha1(world.source(rel)), f"{path} looks complete but is not"
        for row in copy.entries.all():
            path = data / row.relpath
            assert path.is_file() and sha1(path) == row.checksum, f"{row.relpath}: row without its file"


def assert_whole_copy(world, key, location):
    """One verified copy holding every file of the collection exactly once, valid for
    the bagit package, and nothing unfinished left at the location."""
    copy = Copy.objects.get(collection=world.collection(key), location=location,
                            state=Copy.VERIFIED)
    bag_dir = location.backend().write_root / copy.bag_path
    bagit.Bag(str(bag_dir)).validate()
    rows = list(copy.entries.values_list("relpath", flat=True))
    expected = {world.paths.relative(f["path"]) for f in world.truth.collections[key]["files"]}
    assert len(rows) == len(set(rows)) and set(rows) == expected
    assert copy.files == len(expected)
    assert not work_in_progress(location.mount)
    return copy


def cli_env(omerodir):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMERODIR=str(omerodir))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def run_cli(omerodir, *args, timeout=120, **kwargs):
    assert CLI, "console script omero-storagemanager not installed: run scripts/dev-env.sh"
    return subprocess.run([CLI, *args], env=cli_env(omerodir), capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def one_clear_line(proc):
    """A CLI failure says what went wrong in one line, never with a traceback."""
    err = proc.stderr.strip()
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in err and err, proc.stderr
    return err


# -- disk full ----------------------------------------------------------------------------

def mount_tmpfs(path, size):
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(path)], capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(f"the disk-full test needs a real small disk: `mount -t tmpfs -o "
                    f"size={size} tmpfs {path}` failed ({proc.stderr.strip()}); run the "
                    "tests as root on a machine that allows mounts")


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB disk mounted at the returned path (a tmpfs: real ENOSPC)."""
    mount = tmp_path / "mnt-small"
    mount.mkdir()
    mount_tmpfs(mount, "2m")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_is_a_clear_error_leaves_a_partial_bag_and_a_rerun_completes(
        world, small_disk):
    key = world.key_where(many_files)  # 3.5 MB: more than the 2 MiB disk holds
    before = world.primaries(key)
    location = add_location("small disk", "hdd", str(small_disk), 10**9, current=True)
    with pytest.raises(ArchiveError, match="No space left on device") as failure:
        world.archive(key, location)
    assert str(small_disk) in str(failure.value)
    assert "primary files are untouched" in str(failure.value)
    assert_not_archived(world, key)
    assert not complete_bags(location)  # only a .partial bag: never looks complete
    assert [p for p in work_in_progress(small_disk) if p.endswith(".partial")]
    assert_payload_trustworthy(world, location)
    assert world.primaries(key) == before
    # The admin makes room (here: grows the tmpfs); the same archive completes.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert world.archive(key, location).state == "archived"
    assert_whole_copy(world, key, location)
    assert world.primaries(key) == before


def test_disk_full_while_writing_the_tag_files_is_a_clear_error_too(world, tmp_path):
    """The payload fits to the last page, the manifest does not: still an ArchiveError
    (not an OSError escaping the engine), still no bag that looks complete."""
    key = world.key_where(clean)
    before = world.primaries(key)
    pages = sum((f["size"] + 4095) // 4096 for f in world.truth.collections[key]["files"])
    mount = tmp_path / "mnt-exact"
    mount.mkdir()
    mount_tmpfs(mount, str(pages * 4096))  # tmpfs counts data pages only, not directories
    try:
        location = add_location("exact disk", "hdd", str(mount), 10**9, current=True)
        with pytest.raises(ArchiveError, match="No space left on device"):
            world.archive(key, location)
        assert_not_archived(world, key)
        assert not complete_bags(location)
        assert_payload_trustworthy(world, location)
        assert world.primaries(key) == before
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        world.archive(key, location)
        assert_whole_copy(world, key, location)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_in_the_middle_of_a_file_names_the_disk_full(world, tmp_path):
    """The disk fills up inside one file's data (a short write, then ENOSPC): the error
    says "No space left on device", not a misleading read-back mismatch."""
    def one_chunk(f):
        return 8 * 4096 <= f["size"] < 2**20  # one read chunk (1 MiB), 8 pages or more

    key = world.key_where(lambda c: clean(c) and any(one_chunk(f) for f in c["files"]))
    files = sorted(world.truth.collections[key]["files"], key=lambda f: f["path"])
    pages = [(f["size"] + 4095) // 4096 for f in files]
    cut = next(i for i, f in enumerate(files) if one_chunk(f))  # path order, 1 worker
    mount = tmp_path / "mnt-cut"
    mount.mkdir()
    mount_tmpfs(mount, str((sum(pages[:cut]) + pages[cut] // 2) * 4096))
    try:
        location = add_location("cut disk", "hdd", str(mount), 10**9, current=True)
        with pytest.raises(ArchiveError, match="No space left on device") as failure:
            archive_collection(world.conn, world.paths, world.collection(key), location,
                               workers=1, log=_quiet)
        assert os.path.basename(files[cut]["path"]) in str(failure.value)
        assert_not_archived(world, key)
        assert not complete_bags(location)
        assert_payload_trustworthy(world, location)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# -- a location unmounted mid-copy ---------------------------------------------------------

class UnplugAfter(NullProgress):
    """The engine's progress reporter; after `n` verified files it takes the disk away
    (renames <mount>/<id>, as an unplugged disk leaves an empty mount point) while a
    copy worker is already at work on the next files. `hold`: seconds the engine's main
    thread is then kept busy, so the copy workers go on to the next files meanwhile."""

    def __init__(self, n, id_dir, hold):
        self.n, self.id_dir, self.hold, self.seen = n, id_dir, hold, 0

    def advance(self, items=1, files=0, nbytes=0):
        self.seen += files
        if self.seen == self.n:
            os.rename(self.id_dir, self.id_dir + ".away")
            time.sleep(self.hold)


@pytest.mark.parametrize("hold", [0, 0.3], ids=["mid-file", "then-next-files"])
def test_location_unmounted_mid_copy_is_a_clear_error_and_nothing_lands_on_the_mount_point(
        world, hold):
    key = world.key_where(many_files)
    before = world.primaries(key)
    location = world.location("hdd", name="Disk 9")
    id_dir = os.path.join(location.mount, str(location.pk))
    with pytest.raises((ArchiveError, LocationError)) as failure:
        archive_collection(world.conn, world.paths, world.collection(key), location,
                           workers=1, progress=UnplugAfter(40, id_dir, hold), log=_quiet)
    message = str(failure.value)
    assert "Disk 9" in message and f"id {location.pk}" in message and id_dir in message, message
    # Nothing was written under the bare mount point (it would fill the wrong disk).
    assert os.listdir(location.mount) == [f"{location.pk}.away"]
    assert_not_archived(world, key)
    assert world.primaries(key) == before
    os.rename(id_dir + ".away", id_dir)  # the disk is back
    assert_payload_trustworthy(world, location)
    # Rows only for files verified before the disk went (assert_payload_trustworthy
    # checks each has its file): copies finish ahead of the thread that records them,
    # so that can be more than the 40 counted when the disk went, never all of them.
    recorded = CopyFile.objects.filter(copy__location=location).count()
    assert 40 <= recorded < len(world.truth.collections[key]["files"]), recorded
    assert world.archive(key, location).state == "archived"
    assert_whole_copy(world, key, location)
    assert world.primaries(key) == before


# -- a location that turns read-only mid-copy --------------------------------------------

class ReadOnlyAfter(NullProgress):
    """After `n` verified files, the location's filesystem is remounted read-only (a
    disk that the kernel switched to read-only after an error does this)."""

    def __init__(self, n, mount):
        self.n, self.mount, self.seen = n, mount, 0

    def advance(self, items=1, files=0, nbytes=0):
        self.seen += files
        if self.seen == self.n:
            # Refused (EBUSY) while a file is open for writing: again, between files.
            for _ in range(5000):
                if not subprocess.run(["mount", "-o", "remount,ro", str(self.mount)],
                                      capture_output=True).returncode:
                    return
                time.sleep(0.001)
            pytest.fail(f"could not remount {self.mount} read-only")


@pytest.mark.parametrize("after", [100, 300], ids=["before-first-records", "after-them"])
def test_location_read_only_mid_copy_is_a_clear_error_and_a_rerun_completes(
        world, tmp_path, after):
    """Once seen in the reliability suite: the clean-up of unsealed copies failed on the
    read-only disk and hid the error, and a batch of rows was inserted twice."""
    key = world.key_where(many_files)
    before = world.primaries(key)
    mount = tmp_path / "mnt-ro"
    mount.mkdir()
    mount_tmpfs(mount, "64m")
    try:
        location = add_location("ro disk", "hdd", str(mount), 10**9, current=True)
        with pytest.raises(ArchiveError, match="Read-only file system"):
            archive_collection(world.conn, world.paths, world.collection(key), location,
                               workers=1, progress=ReadOnlyAfter(after, mount), log=_quiet)
        assert_not_archived(world, key)
        assert world.primaries(key) == before
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        assert_payload_trustworthy(world, location)
        assert world.archive(key, location).state == "archived"
        assert_whole_copy(world, key, location)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# -- a file changed during the copy --------------------------------------------------------

def test_file_changed_while_copied_is_never_archived(world):
    key = world.key_where(lambda c: clean(c) and any(f["kind"] == "pixels" for f in c["files"]))
    victim = next(f["path"] for f in world.truth.collections[key]["files"]
                  if f["kind"] == "pixels")
    block = os.urandom(1 << 20)
    with open(victim, "wb") as fh:  # big enough to be caught in the middle of its copy
        for _ in range(64):
            fh.write(block)
    before = world.primaries(key)
    location = world.location("hdd")
    relpath = world.paths.relative(victim)
    write_root = location.backend().write_root
    appended = threading.Event()
    stop = threading.Event()

    def change_it_while_copied():
        while not stop.is_set():
            if any(write_root.glob(f"*/*/*/*/*.partial/data/{relpath}{TMP_SUFFIX}")):
                with open(victim, "ab") as fh:
                    fh.write(b"one more plane")
                appended.set()
                return
            time.sleep(0.0005)

    changer = threading.Thread(target=change_it_while_copied)
    changer.start()
    try:
        with pytest.raises(ArchiveError, match="changed while it was being copied"):
            world.archive(key, location)
    finally:
        stop.set()
        changer.join()
    assert appended.is_set()
    assert_not_archived(world, key)
    assert not complete_bags(location)
    assert_payload_trustworthy(world, location)
    assert not list(write_root.glob(f"*/*/*/*/*.partial/data/{relpath}"))
    # The primary holds exactly what was written to it: the engine changed nothing.
    after = world.primaries(key)
    assert {p: v for p, v in after.items() if p != victim} == \
        {p: v for p, v in before.items() if p != victim}
    expected = hashlib.sha1(block * 64 + b"one more plane").hexdigest()
    assert after[victim][0] == expected
    # Once it stays still, the archive completes with the new content.
    world.archive(key, location)
    copy = assert_whole_copy(world, key, location)
    assert copy.entries.get(relpath=relpath).checksum == expected


# -- permission denied ---------------------------------------------------------------------

# Root ignores file permissions, and `nobody` cannot run this interpreter (it lives under
# /root, mode 0700, here). So the console script runs as root WITHOUT the capabilities
# that bypass permission checks (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
# dropped from the bounding set by util-linux `setpriv` before exec): the kernel then
# checks permissions for it as for any user, and files owned by `nobody` with mode
# 0755/0600 refuse it writes/reads with a real EACCES, as the OMERO.web user would get.
UNPRIVILEGED = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def run_unprivileged(omerodir, *args):
    if not shutil.which("setpriv"):
        pytest.fail("the permission test needs util-linux `setpriv` (apt-get install "
                    "util-linux) to run the console script without root's overrides")
    env = cli_env(omerodir)
    return subprocess.run([*UNPRIVILEGED, CLI, *args], env=env, capture_output=True,
                          text=True, timeout=120)


def chown_tree(path, uid):
    for top, _, names in os.walk(path):
        os.chown(top, uid, uid)
        for name in names:
            os.lchown(os.path.join(top, name), uid, uid)


def test_permission_denied_is_a_clear_error_and_leaves_the_primary_alone(world, tmp_path):
    key = world.key_where(clean)
    before = world.primaries(key)
    omerodir = world.omerodir(tmp_path / "omerodir")
    location = world.location("hdd", name="their disk")
    id_dir = os.path.join(location.mount, str(location.pk))
    # 1. The location belongs to another user (0755): the archive may not write there.
    chown_tree(id_dir, NOBODY)
    proc = run_unprivileged(omerodir, "archive", key, "--quiet")
    err = one_clear_line(proc)
    assert proc.returncode == 1 and err.startswith(f"{key}: ") and "Permission denied" in err
    assert id_dir in err, err
    assert_not_archived(world, key)
    assert world.primaries(key) == before
    # 2. The location is writable, but one primary file is another user's, mode 0600.
    chown_tree(id_dir, 0)
    victim = next(p for p in sorted(before) if os.path.getsize(p) > 0)
    os.chown(victim, NOBODY, NOBODY)
    os.chmod(victim, 0o600)
    proc = run_unprivileged(omerodir, "archive", key, "--quiet")
    err = one_clear_line(proc)
    assert "Permission denied" in err and victim in err, err
    assert_not_archived(world, key)
    assert not complete_bags(location)
    assert_payload_trustworthy(world, location)
    assert sha1(victim) == before[victim][0]  # the primary itself is as it was
    os.chown(victim, 0, 0)
    os.chmod(victim, before[victim][1])
    assert world.primaries(key) == before
    # 3. Permissions fixed: the same command completes the copy it had begun.
    proc = run_unprivileged(omerodir, "archive", key, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert_whole_copy(world, key, location)
    assert world.primaries(key) == before


# -- kill -9 at any instant, then run again ------------------------------------------------

def start_cli(omerodir, *args):
    assert CLI, "console script omero-storagemanager not installed: run scripts/dev-env.sh"
    return subprocess.Popen([CLI, *args], env=cli_env(omerodir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_when(proc, condition, must_kill=True, timeout=90):
    """SIGKILL the process as soon as condition() holds. Returns True when it was killed,
    False when it ended first (allowed only with must_kill=False)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if condition():
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                assert proc.returncode == -signal.SIGKILL, proc.returncode
                return True
            if proc.poll() is not None:
                out, err = proc.communicate()
                assert not must_kill, f"ended (exit {proc.returncode}) before the kill " \
                                      f"point: {out}{err}"
                assert proc.returncode == 0, err
                return False
            time.sleep(0.005)
        pytest.fail("the kill point was never reached")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def payload_files(location):
    return sum(len(names) for _, _, names in os.walk(location.backend().write_root))


ARCHIVE_KILLS = {
    # files being copied, none recorded yet (rows are written 256 at a time)
    "copying": lambda loc, total: CopyFile.objects.filter(copy__location=loc).count() == 0
    and payload_files(loc) >= 60,
    # some rows written, more files in flight
    "recorded": lambda loc, total: CopyFile.objects.filter(copy__location=loc).count() >= 256,
    # every file recorded: the bag is being finished, published, marked verified
    "finishing": lambda loc, total: CopyFile.objects.filter(copy__location=loc).count() >= total,
    # the bag is complete under its final name, the copy not yet marked verified
    "published": lambda loc, total: bool(complete_bags(loc)),
}


@pytest.mark.parametrize("when", list(ARCHIVE_KILLS))
def test_archive_killed_then_run_again_completes(world, tmp_path, when):
    key = world.key_where(many_files)
    total = len(world.truth.collections[key]["files"])
    before = world.primaries(key)
    location = world.location("hdd")
    omerodir = world.omerodir(tmp_path / "omerodir", copy_workers=2)
    proc = start_cli(omerodir, "archive", key, "--quiet")
    killed = kill_when(proc, lambda: ARCHIVE_KILLS[when](location, total),
                       must_kill=when not in ("finishing", "published"))
    if killed:
        assert_payload_trustworthy(world, location)
        for bag in complete_bags(location):  # a bag under its final name is whole
            bagit.Bag(str(bag)).validate()
    assert world.primaries(key) == before
    proc = run_cli(omerodir, "archive", key, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert Copy.objects.filter(location=location).count() == 1  # resumed, not begun again
    assert_whole_copy(world, key, location)
    assert world.primaries(key) == before


def purged_consistently(world, key, before):
    """No lost file, no purge without a verified copy holding exactly its content."""
    rows = {}
    for row in PurgedFile.objects.filter(collection=world.collection(key)).select_related(
            "copy_file__copy__location"):
        assert row.path not in rows, f"{row.path} has two purge records"
        rows[row.path] = row
        copy = row.copy_file.copy
        assert row.copy_file.verified and copy.state == Copy.VERIFIED
        assert row.sha1 == row.copy_file.checksum == before[row.path][0]
        bag_file = copy.location.backend().write_root / copy.bag_path / "data" / row.relpath
        assert sha1(bag_file) == before[row.path][0]
    for path, (digest, mode) in before.items():
        if not os.path.lexists(path):
            assert path in rows, f"{path} is gone without a purge record"
        else:
            assert sha1(path) == digest
    return rows


@pytest.mark.parametrize("after_rows", [1, 120, 300])
def test_purge_killed_then_run_again_completes(world, tmp_path, after_rows):
    key = world.key_where(many_files)
    before = world.primaries(key)
    location = world.location("hdd")
    world.archive(key, location)
    omerodir = world.omerodir(tmp_path / "omerodir")
    collection = world.collection(key)
    proc = start_cli(omerodir, "purge", key)
    kill_when(proc, lambda: PurgedFile.objects.filter(collection=collection).count()
              >= after_rows)
    purged_consistently(world, key, before)
    proc = run_cli(omerodir, "purge", key)
    assert proc.returncode == 0, proc.stderr
    rows = purged_consistently(world, key, before)
    assert rows and all(r.state == PurgedFile.PURGED for r in rows.values())
    shared = {f["path"] for f in world.truth.collections[key]["files"] if f["shared_with"]}
    assert set(rows) == set(before) - shared  # all but what another online Screen needs
    assert not any(os.path.lexists(p) for p in rows)
    assert world.collection(key).state == Collection.PARTIALLY_PURGED
    assert not work_in_progress(world.paths.data_dir)
    world.restore(key)  # and nothing was lost
    assert world.primaries(key) == before


@pytest.mark.parametrize("after_rows", [1, 120, 300])
def test_restore_killed_then_run_again_completes(world, tmp_path, after_rows):
    key = world.key_where(many_files)
    before = world.primaries(key)
    location = world.location("hdd")
    world.archive(key, location)
    world.purge(key)
    collection = world.collection(key)
    omerodir = world.omerodir(tmp_path / "omerodir")
    proc = start_cli(omerodir, "restore", key)
    kill_when(proc, lambda: PurgedFile.objects.filter(
        collection=collection, state=PurgedFile.RESTORED).count() >= after_rows)
    # No half-written file looks complete: whatever is back under its name is whole.
    for path, (digest, _) in before.items():
        if os.path.lexists(path):
            assert sha1(path) == digest, f"{path} is back but not whole"
    for row in PurgedFile.objects.filter(collection=collection, state=PurgedFile.RESTORED):
        assert sha1(row.path) == before[row.path][0]
    proc = run_cli(omerodir, "restore", key)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert world.primaries(key) == before  # byte-identical, modes too
    assert not work_in_progress(world.paths.data_dir)
    assert not PurgedFile.objects.filter(collection=collection).exclude(
        state=PurgedFile.RESTORED).exists()
    assert world.collection(key).state == Collection.ARCHIVED

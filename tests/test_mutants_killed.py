"""Tests written for the mutants that survived the suite (issue 19, mutation testing).

scripts/mutation.sh runs a sample of mutmut's one-line mutants of the safety-critical
modules against the tests that cover them; each test here was written for a mutant that
passed those tests, checks the behaviour the mutated line is for, and was seen to fail
on that mutant (docs/reliability.md, "Mutation testing (issue 19)", lists them).
"""
import itertools
import os

import pytest

from omero_storagemanager.engine.purge import plan_purge
from omero_storagemanager.models import Collection, Copy, PurgedFile
from tests.test_archive import clean, world  # noqa: F401 (the fixture)
from tests.test_purge_reality import _bag_file


def _archived_with(world, at_least):
    """An archived clean collection with at least `at_least` non-pyramid files."""
    key = world.key_where(lambda c: clean(c) and sum(
        1 for f in c["files"] if f["kind"] != "pyramid" and (f["size"] or 0) > 0) >= at_least)
    location = world.location("hdd")
    world.archive(key, location)
    files = [f["path"] for f in world.truth.collections[key]["files"]
             if f["kind"] != "pyramid" and (f["size"] or 0) > 0]
    return key, location, files


def test_a_second_plan_counts_every_file_already_purged(world):
    # purge.py: `result.already += 1` (mutant: `= 1`). The dry run after a partial purge
    # says how many files are purged already: all of them, not one.
    key, location, files = _archived_with(world, 3)
    copy = Copy.objects.get(location=location)
    kept = files[0]
    os.unlink(_bag_file(location, copy, world.paths.relative(kept)))  # its copy is lost
    first = world.purge(key)
    assert kept in dict(first.blocked) and len(first.freed) >= 2
    again = plan_purge(world.conn, world.paths, world.collection(key))
    purged = set(PurgedFile.objects.filter(collection=world.collection(key),
                                           state=PurgedFile.PURGED).values_list("path", flat=True))
    assert again.already == len(purged) == len(first.freed)  # pyramids (on disk only) too
    assert not again.freed and kept in dict(again.blocked)


def test_a_file_missing_from_the_repository_is_named_as_such(world):
    # purge.py: the reason "missing from the repository" (mutant: any other text). The
    # dry run and the job's log tell the admin why a file cannot be purged.
    key, location, files = _archived_with(world, 2)
    gone = files[0]
    os.unlink(gone)  # deleted from primary storage by hand after the archive
    plan = plan_purge(world.conn, world.paths, world.collection(key))
    assert dict(plan.blocked)[gone] == "missing from the repository"
    assert gone not in {c.record.path for c in plan.freed}


class _Killed(BaseException):
    """The job's process dying right after a delete (not an error a purge handles)."""


def test_a_purge_killed_after_a_delete_is_finished_by_the_next_one(world, monkeypatch):
    # purge.py _settle_intents: a file whose INTENT row is there and which is gone from
    # the repository was purged (mutant: `st = ""` for a missing file, so the row is
    # dropped and the next plan sees the file as missing, never purged).
    from omero_storagemanager.engine import purge

    key, location, files = _archived_with(world, 2)
    real = purge._free_at

    def free_then_die(candidate, *args):
        assert real(candidate, *args) is None
        raise _Killed(candidate.record.path)

    monkeypatch.setattr(purge, "_free_at", free_then_die)
    with pytest.raises(_Killed) as killed:
        world.purge(key)
    first = killed.value.args[0]
    monkeypatch.setattr(purge, "_free_at", real)
    assert not os.path.exists(first)
    intent = PurgedFile.objects.get(path=first)
    assert intent.state == PurgedFile.INTENT  # killed between the delete and PURGED
    plan = world.purge(key)
    assert not plan.blocked
    assert PurgedFile.objects.get(path=first).state == PurgedFile.PURGED
    assert world.collection(key).state == Collection.PURGED


def test_a_state_without_purged_files_is_never_purged(world):
    # purge.py collection_state: with no PurgedFile row left a "purged" or "partially
    # purged" state is a lie: archived when a verified copy exists, else online (mutant:
    # `not in`, which keeps the lie and turns a restoring collection into archived).
    from omero_storagemanager.engine.purge import collection_state

    key = world.key_where(clean)
    world.archive(key, world.location("hdd"))
    for stale in (Collection.PURGED, Collection.PARTIALLY_PURGED):
        Collection.objects.filter(pk=world.collection(key).pk).update(state=stale)
        assert collection_state(world.collection(key)) == Collection.ARCHIVED
        assert world.collection(key).state == Collection.ARCHIVED
    Copy.objects.filter(collection=world.collection(key)).update(state=Copy.FAILED_AUDIT)
    Collection.objects.filter(pk=world.collection(key).pk).update(state=Collection.PURGED)
    assert collection_state(world.collection(key)) == Collection.ONLINE
    for kept in (Collection.RESTORING, Collection.ARCHIVED):
        Collection.objects.filter(pk=world.collection(key).pk).update(state=kept)
        assert collection_state(world.collection(key)) == kept


def test_the_state_annotation_says_how_to_get_a_purged_collection_back(world):
    # purge.py state_pairs: the "how to get it back" line only on purged states
    # (mutant: `not in`, which tells users of an online collection to request a restore).
    from omero_storagemanager.engine.purge import state_pairs

    key = world.key_where(clean)
    world.archive(key, world.location("hdd"))
    collection = world.collection(key)
    for state in (Collection.PURGED, Collection.PARTIALLY_PURGED):
        pairs = dict(state_pairs(collection, state))
        assert pairs["state"] == state and "request a restore" in pairs["how to get it back"]
    for state in (Collection.ARCHIVED, Collection.ONLINE):
        pairs = state_pairs(collection, state)
        assert "how to get it back" not in dict(pairs)
        assert [v for k, v in pairs if k == "copy"]  # the archived copy is named


# -- engine/beneath.py ------------------------------------------------------------------


def _kernel_has_openat2():
    """Asked of the kernel here, independently of beneath.py: openat2(2) (syscall 437,
    struct open_how {flags, mode, resolve}) on "/" with no resolve flag."""
    import ctypes
    import platform

    if platform.system() != "Linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    how = (ctypes.c_uint64 * 3)(os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, 0)
    fd = libc.syscall(ctypes.c_long(437), ctypes.c_int(-100), ctypes.c_char_p(b"/"),
                      ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        return False  # ENOSYS (old kernel), EPERM (a seccomp filter)
    os.close(fd)
    return True


def test_openat2_is_used_wherever_the_kernel_has_it():
    # beneath.py _load_openat2: `libc = ctypes.CDLL(None, ...)` (mutant: `libc = None`,
    # so openat2 is never found and every directory is walked component by component:
    # the kernel's atomic RESOLVE_BENEATH check, the point of the module, is lost on
    # every kernel, and test_beneath.py's openat2 cases skip instead of failing).
    from omero_storagemanager.engine import beneath

    if not _kernel_has_openat2():
        pytest.skip("this kernel (or its seccomp filter) refuses openat2")
    assert beneath.HAVE_OPENAT2 and beneath._openat2 is not None


# -- catalog/membership.py --------------------------------------------------------------

# Every other OMERO 5.4 model class a FileAnnotation can be linked to (each has an
# <type>annotationlink table in a real OMERO; the test bed has only the first seven:
# project, dataset, image, screen, plate, well, fileset), with its class name.
OMERO_ANNOTATABLE = {
    "plateacquisition": "PlateAcquisition", "roi": "Roi", "shape": "Shape",
    "channel": "Channel", "planeinfo": "PlaneInfo", "annotation": "Annotation",
    "experimenter": "Experimenter", "experimentergroup": "ExperimenterGroup",
    "folder": "Folder", "namespace": "Namespace", "node": "Node",
    "originalfile": "OriginalFile", "session": "Session", "reagent": "Reagent",
    "instrument": "Instrument", "detector": "Detector", "dichroic": "Dichroic",
    "filter": "Filter", "lightpath": "LightPath", "lightsource": "LightSource",
    "objective": "Objective"}


def test_an_attachment_on_any_omero_object_holds_its_file(omero_db):
    # membership.py _LINKED: each link table looked up by its type's name, each holder
    # named by its OMERO class (mutants: a key or a name changed, e.g. "folder" ->
    # "XXfolderXX", so a file attached to a Folder was not held by it and a purge could
    # free it; or "Node" -> "XXNodeXX" in the key the admin is shown). The test bed has
    # none of these tables: they are made here, one file annotation linked in each.
    import psycopg2

    from omero_storagemanager.catalog.membership import holders
    from tests.test_membership import P, Bed

    writer = psycopg2.connect(omero_db.dsn)
    writer.autocommit = True
    made = []
    try:
        with writer.cursor() as cur:
            for otype in OMERO_ANNOTATABLE:
                cur.execute("SELECT to_regclass(%s)", [f"{otype}annotationlink"])
                if cur.fetchone()[0] is None:
                    cur.execute(f"CREATE TABLE {otype}annotationlink"
                                " (LIKE projectannotationlink)")
                    made.append(otype)
        assert made, "the test bed has every link table: nothing to check here"
        bed = Bed(writer)
        bed.ids = itertools.count(9_000_000)  # clear of test_membership.py's rows
        p = bed.project()
        ann, ofid = bed.attach(("project", p), *[(t, 77) for t in made])
        fresh = psycopg2.connect(omero_db.dsn)  # link tables are looked up per connection
        fresh.set_session(readonly=True, autocommit=True)
        try:
            held = holders(fresh, originalfile_ids=[ofid]).files[ofid]
        finally:
            fresh.close()
        assert held == {P(p)} | {f"FileAnnotation:{ann} on {OMERO_ANNOTATABLE[t]}:77"
                                 for t in made}
    finally:
        with writer.cursor() as cur:
            for otype in made:
                cur.execute(f"DROP TABLE {otype}annotationlink")
        writer.close()


# -- permissions.py ---------------------------------------------------------------------


class _Gateway:
    """The identity an Access asks OMERO for (a stand-in without a database)."""

    def __init__(self, user_id, admin=False, member_of=(), leader_of=()):
        self._id, self._admin = user_id, admin
        self._member, self._leader = list(member_of), list(leader_of)

    def user_id(self):
        return self._id

    def user_name(self):
        return f"user{self._id}"

    def is_admin(self):
        return self._admin

    def member_of_groups(self):
        return self._member

    def leader_of_groups(self):
        return self._leader

    def admin_privileges(self):
        from omero_storagemanager.gateway import ALL_PRIVILEGES

        return sorted(ALL_PRIVILEGES) if self._admin else []


def test_every_action_a_user_is_granted_is_one_the_api_accepts():
    # permissions.py Access.actions: every action it grants must be one of ACTIONS, the
    # words the JSON API accepts (views/api.py refuses any other with a 400). Mutant:
    # "restore" misspelt in what an owner may do without approval, so the restore of
    # their purged collection was offered and then refused (the suite had no owner of a
    # purged collection with approval off).
    from omero_storagemanager.permissions import ACTIONS, Access

    group, states = 5, [s for s, _ in Collection.STATES]
    who = {"admin": _Gateway(0, admin=True), "leader": _Gateway(2, member_of=[group],
                                                                leader_of=[group]),
           "owner": _Gateway(3, member_of=[group]), "member": _Gateway(4, member_of=[group])}
    granted = set()
    for approval in (True, False):
        prefs = {"group_owners_manage": True, "visibility": "group",
                 "require_approval": approval}
        for name, gateway in who.items():
            access = Access(gateway, {group: -40}, prefs)  # -40: read-only group
            for state in states:
                collection = Collection(kind="project", omero_id=1, owner_id=3,
                                        group_id=group, state=state)
                granted |= set(access.actions(collection))
    assert {"purge", "restore", "archive", "request_restore"} <= granted  # all were tried
    assert granted <= set(ACTIONS)


# -- engine/copyfile.py -----------------------------------------------------------------


def test_a_copy_made_beneath_a_root_names_its_full_path_when_it_reads_back_wrong(tmp_path):
    # copyfile.py PendingCopy.where: `self.label or self.target` (mutant: `and`, so a
    # copy written by name in a directory descriptor, as restore writes, was named by
    # its bare file name in the error: the admin could not tell which file of which
    # folder failed).
    from omero_storagemanager.engine.copyfile import CopyCorrupt, seal_copy, write_copy

    folder = tmp_path / "repo" / "user_1" / "2020-01"
    folder.mkdir(parents=True)
    source = tmp_path / "source"
    source.write_bytes(b"x" * 4096)
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        pending = write_copy(str(source), "image.tif", dir_fd=dfd,
                             label=str(folder / "image.tif"))
        with open(folder / os.path.basename(pending.tmp), "r+b") as f:
            f.write(b"y")  # the disk gives back other bytes than were written
        with pytest.raises(CopyCorrupt) as caught:
            seal_copy(pending)
    finally:
        os.close(dfd)
    assert str(caught.value).startswith(f"{folder / 'image.tif'}: read back ")
    assert os.listdir(folder) == []


class _DiskFull:
    """os for copyfile.py, except that os.write accepts no byte (a disk that takes no
    more and does not say why: the next write would report ENOSPC)."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def write(fd, data):
        return 0


def test_a_disk_that_accepts_no_more_bytes_fails_the_copy_with_a_clear_error(
        tmp_path, monkeypatch):
    # copyfile.py _writer: a write of 0 bytes is an EIO "the disk accepted no more
    # bytes" naming the file (mutant: the text changed), never a loop nor a short copy.
    import errno

    from omero_storagemanager.engine import copyfile

    source, target = tmp_path / "source", tmp_path / "dest" / "copy"
    source.write_bytes(b"z" * 1000)
    monkeypatch.setattr(copyfile, "os", _DiskFull())
    with pytest.raises(OSError) as caught:
        copyfile.write_copy(str(source), str(target))
    monkeypatch.undo()
    assert caught.value.errno == errno.EIO
    assert caught.value.strerror == "the disk accepted no more bytes"
    assert caught.value.filename == str(target) + copyfile.TMP_SUFFIX
    assert os.listdir(target.parent) == []  # no temporary file left


def test_a_damaged_primary_is_named_with_both_checksums(tmp_path):
    # copyfile.py write_copy: PrimaryDamaged says which file, what OMERO recorded and
    # what was read (mutant: the text changed), so the admin can tell damage on primary
    # storage from a stale checksum; nothing is left at the target.
    import hashlib

    from omero_storagemanager.engine.copyfile import PrimaryDamaged, write_copy

    source, target = tmp_path / "source", tmp_path / "dest" / "copy"
    source.write_bytes(b"what OMERO has now")
    recorded = hashlib.sha1(b"what OMERO imported").hexdigest()
    with pytest.raises(PrimaryDamaged) as caught:
        write_copy(str(source), str(target), recorded, "SHA1-160")
    read = hashlib.sha1(source.read_bytes()).hexdigest()
    assert str(caught.value) == (f"{source} does not match its recorded checksum "
                                 f"(SHA1-160 {recorded}, read {read})")
    assert os.listdir(target.parent) == []


def _pending_beneath(tmp_path, folder_name="repo"):
    """A copy written by name in a directory descriptor, as restore writes one, not yet
    durable: (pending copy, the descriptor, the folder)."""
    from omero_storagemanager.engine.copyfile import write_copy

    folder = tmp_path / folder_name
    folder.mkdir()
    source = tmp_path / "source"
    source.write_bytes(os.urandom(10_000))
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    pending = write_copy(str(source), "image.tif", durable=False, dir_fd=dfd,
                         label=str(folder / "image.tif"))
    return pending, dfd, folder


def test_a_batch_written_beneath_a_root_is_flushed_by_syncfs_and_sealed(tmp_path):
    # copyfile.py make_durable: syncfs through the caller's directory descriptor
    # succeeds when it returns 0 (mutant: `!= 1`, every restore batch failed with
    # "Success"); the streamcopy and batchcopy tests flush copies made by path only.
    from omero_storagemanager.engine import copyfile

    if copyfile._libc is None:
        pytest.skip("no syncfs that reports errors here (Linux < 5.8): fsync per file")
    pending, dfd, folder = _pending_beneath(tmp_path)
    try:
        copyfile.make_durable([pending])
        assert pending.durable
        result = copyfile.seal_copy(pending)
    finally:
        os.close(dfd)
    assert (folder / "image.tif").read_bytes() == (tmp_path / "source").read_bytes()
    assert result.size == 10_000 and os.listdir(folder) == ["image.tif"]


class _Advice:
    """os for copyfile.py, recording each posix_fadvise advice."""

    def __init__(self):
        self.advice = []

    def __getattr__(self, name):
        return getattr(os, name)

    def posix_fadvise(self, fd, offset, length, advice):
        self.advice.append(advice)
        return os.posix_fadvise(fd, offset, length, advice)


def test_a_copy_asked_back_from_the_disk_ahead_is_not_dropped_again_when_sealed(
        tmp_path, monkeypatch):
    # copyfile.py reread_from_disk: once it has dropped the copy's cached pages and
    # asked the disk for them (WILLNEED), it marks the copy so that seal_copy does not
    # drop them again (mutant: `reread = None`, falsy: seal_copy's own DONTNEED threw
    # away the read-ahead of every file of a batch, which then waited on the disk one by
    # one).
    from omero_storagemanager.engine import copyfile

    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise here")
    pending, dfd, folder = _pending_beneath(tmp_path)
    try:
        copyfile.make_durable([pending])
        spy = _Advice()
        monkeypatch.setattr(copyfile, "os", spy)
        copyfile.reread_from_disk(pending)
        assert spy.advice == [os.POSIX_FADV_DONTNEED, os.POSIX_FADV_WILLNEED]
        copyfile.seal_copy(pending)
        monkeypatch.undo()
    finally:
        os.close(dfd)
    assert spy.advice == [os.POSIX_FADV_DONTNEED, os.POSIX_FADV_WILLNEED]  # no 2nd drop
    assert (folder / "image.tif").read_bytes() == (tmp_path / "source").read_bytes()


# -- backends/bagcheck.py ---------------------------------------------------------------


def test_a_valid_bag_is_vouched_for_by_the_streaming_pass_alone_and_quietly(
        tmp_path, monkeypatch):
    # bagcheck.py _valid_streaming: the manifest opened "rb" (mutant: an invalid mode,
    # whose ValueError the pass took for "cannot vouch", so every bag, however large,
    # was listed in memory by read_bag: the flat memory validate_bag promises was lost,
    # the verdict the same). _hash_file: files read unbuffered (mutant: buffering=1,
    # which Python refuses in binary mode with a RuntimeWarning per file checked).
    import warnings

    from omero_storagemanager.backends import bagcheck
    from tests.backends.conftest import FILES, write_bag

    bag = write_bag(tmp_path / "bag", FILES)

    def listed(*args, **kwargs):
        raise AssertionError("a valid bag was listed in memory")

    monkeypatch.setattr(bagcheck, "read_bag", listed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bagcheck.validate_bag(bag) == []
        assert bagcheck.validate_bag(bag, check_hashes=False) == []


# -- engine/restore.py ------------------------------------------------------------------


def test_a_bag_outside_its_locations_root_is_read_beneath_the_bag_itself(
        tmp_path, monkeypatch):
    # restore.py _Attempt._source: a bag that a backend gives back outside its
    # location's root (none of the shipped backends does: every bag is under
    # <mount>/<id>) is read beneath the bag, at data/<path> (mutant: the path changed,
    # so such a restore read nothing). Checked by reading the file through the pair.
    from types import SimpleNamespace

    from omero_storagemanager.engine import beneath
    from omero_storagemanager.engine.restore import _Attempt

    relpath = "ManagedRepository/user_2/2020-01/01/image.tif"
    bag = tmp_path / "elsewhere" / "bag-1"
    (bag / "data" / os.path.dirname(relpath)).mkdir(parents=True)
    (bag / "data" / relpath).write_bytes(b"the archived bytes")
    inside = tmp_path / "mount" / "7" / "write" / "bag-2"
    (inside / "data" / os.path.dirname(relpath)).mkdir(parents=True)
    (inside / "data" / relpath).write_bytes(b"the bytes under the root")
    backend = SimpleNamespace(root=tmp_path / "mount" / "7")
    location = SimpleNamespace(pk=7, mount=str(tmp_path / "mount"), backend=lambda: backend)
    entry = SimpleNamespace(copy=SimpleNamespace(location=location))
    monkeypatch.setattr(_Attempt, "_location_roots", {})
    attempt = _Attempt(SimpleNamespace(relpath=relpath, path=f"/omero/{relpath}"), [], [])
    for where, content in ((bag, b"the archived bytes"), (inside, b"the bytes under the root")):
        root, below = attempt._source(where, entry)
        fd = beneath.open_file(root, below)
        with os.fdopen(fd, "rb") as f:
            assert f.read() == content


def test_a_restore_whose_flush_fails_says_so_and_the_next_run_finishes_it(
        world, monkeypatch):
    # restore.py: a failed flush of restored files (the fsync of their folders) is a
    # RestoreError naming the collection, the error and its file (none here: an fsync
    # error has no file name, and nothing else is printed in its place; mutant: 'XXXX'
    # printed instead) and saying that running again resumes it, which is checked too.
    import errno

    from omero_storagemanager.engine import restore
    from omero_storagemanager.engine.restore import RestoreError

    key, location, files = _archived_with(world, 2)
    world.purge(key)
    real, calls = restore.fsync_dirs, []

    def fails_once(dirs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))  # as os.fsync raises it
        return real(dirs)

    monkeypatch.setattr(restore, "fsync_dirs", fails_once)
    monkeypatch.setattr(restore, "BATCH", 1)
    with pytest.raises(RestoreError) as caught:
        world.restore(key)
    name = world.collection(key).key
    assert str(caught.value) == (f"{name}: writing the restored files failed: "
                                 f"{os.strerror(errno.EIO)} (); running the restore "
                                 "again resumes it")
    monkeypatch.undo()
    world.restore(key)
    assert world.collection(key).state == Collection.ARCHIVED
    assert all(os.path.exists(f) for f in files)


def test_a_holder_whose_purged_files_all_came_back_with_another_says_so_in_the_log(world):
    # restore.py _settle_holders: a collection purged along with another, whose purged
    # files were all shared with it, is archived again when the other is restored, and
    # the log (the job's, the command line's) says why its state changed (mutant: the
    # text changed; test_purge_reality.py's joint test checks the state only).
    from omero_storagemanager.engine.restore import restore_collection
    from tests.test_purge_reality import _shared_pair

    first, second = _shared_pair(world)
    location = world.location("hdd")
    for key in (first, second):
        world.archive(key, location)
    world.purge(second, along_with={first, second})  # first's shared files go with it
    assert PurgedFile.objects.filter(collection=world.collection(first),
                                     state=PurgedFile.PURGED).exists()
    lines = []
    restore_collection(world.collection(second), world.gateway, log=lines.append)
    assert world.collection(first).state == Collection.ARCHIVED
    assert (f"{world.collection(first).key}: every purged file is back (restored with a "
            "collection sharing them): archived") in lines


def test_a_collection_purged_without_omero_changes_is_restored_in_its_own_group(world):
    # restore.py undo_omero_changes: the group is moved back only when the purge
    # recorded one (mutant: `or`, so a collection whose purge changed nothing in OMERO,
    # no gateway then, was moved to group None: the restore failed at its very end).
    from omero_storagemanager.catalog.collections import parse_key
    from omero_storagemanager.engine.purge import purge_collection
    from tests.test_archive import _quiet

    key, location, files = _archived_with(world, 1)
    kind, oid = parse_key(key)
    before = world.gateway.describe(kind, oid)
    purge_collection(world.conn, world.paths, world.collection(key), None, log=_quiet)
    assert world.collection(key).original_group_id is None  # nothing changed in OMERO
    assert not os.path.exists(files[0])
    world.restore(key)
    assert world.collection(key).state == Collection.ARCHIVED
    assert os.path.exists(files[0])
    after = world.gateway.describe(kind, oid)
    assert (after["group_id"], after["owner_id"], after["name"]) == (
        before["group_id"], before["owner_id"], before["name"])


# -- purgecheck, second sample (seed 20) --------------------------------------------------

def test_a_copy_compared_in_samples_keeps_the_primary_when_a_sampled_block_differs(world):
    # purgecheck.py: SAMPLE_BYTES (mutant: None) and the sampled comparison had no test:
    # above `sample_above` bytes the copy is compared with the primary at 16 places, the
    # first block always among them, and the dry run counts what that reads.
    from omero_storagemanager.engine.purgecheck import SAMPLE_BYTES, SAMPLES

    key, location, files = _archived_with(world, 2)
    copy = Copy.objects.get(location=location)
    plan = plan_purge(world.conn, world.paths, world.collection(key), sample_above=1)
    assert plan.freed and all(c.primary is not None for c in plan.freed)
    assert plan.read_bytes == sum(2 * min(c.record.disk_size, SAMPLES * SAMPLE_BYTES)
                                  for c in plan.freed)
    victim = files[0]
    bag_file = _bag_file(location, copy, world.paths.relative(victim))
    with open(bag_file, "r+b") as fh:  # the first byte: in the first sampled block
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    before = open(victim, "rb").read()
    done = world.purge(key, sample_above=1)
    assert "differs from the primary file" in dict(done.blocked)[victim]
    assert open(victim, "rb").read() == before
    assert all(not os.path.exists(f) for f in files[1:] if f in
               {c.record.path for c in done.freed})


def test_a_missing_copy_is_named_with_the_file_it_lacks(world):
    # purgecheck.py: the reason a copy on a connected disk does not count names the file
    # it lacks (mutant: the name garbled), so the admin knows what to look for.
    key, location, files = _archived_with(world, 1)
    copy = Copy.objects.get(location=location)
    relpath = world.paths.relative(files[0])
    os.unlink(_bag_file(location, copy, relpath))
    plan = plan_purge(world.conn, world.paths, world.collection(key))
    assert dict(plan.blocked)[files[0]].endswith(f"is missing {relpath}")

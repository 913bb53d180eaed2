"""States that tell the truth (issue 19, finding 6).

- A restore of a collection that was never archived is refused in one line and changes
  nothing; a restore of one whose files are online says so and changes nothing either
  (neither the app's state nor OMERO's state annotation).
- A refused archive (the location would be full, a damaged primary) leaves no
  `<bag>.partial` folder and no empty WRITING copy made just for it, and a refusal
  stays a refusal when the archive is run again.
- An error names its collection once ("Project:105: ...", never
  "Project:105: Project:105: ...").

Real files, the real OMERO-shaped database, the stand-in gateway (test_archive.World);
the command line through the console script (test_archive_faults.run_cli).
"""
import os
import re

import pytest

from omero_storagemanager.engine import archive
from omero_storagemanager.engine.archive import ArchiveError, LocationFull
from omero_storagemanager.engine.batchcopy import BATCH_FILES
from omero_storagemanager.engine.copyfile import PrimaryDamaged
from omero_storagemanager.engine.restore import RestoreError, restore_collection
from omero_storagemanager.models import Collection, Copy, CopyFile, PurgedFile
from tests.test_archive import world_of
from tests.test_archive_faults import FaultWorld, clean, one_clear_line, run_cli, \
    work_in_progress


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    yield from world_of(FaultWorld, "st_", pg_server, tmp_path, request)


TRAILER = re.compile(r"CommandError: [\w-]+ found problems \(exit \d+\)$")


def error_lines(proc):
    """A failed command's lines on stderr, without its last line's "CommandError: VERB
    found problems (exit N)" (tests/reliability/faults.py: one_clear_line)."""
    err = one_clear_line(proc)
    return [line for line in err.splitlines() if not TRAILER.match(line)]


def restore(world, key, lines):
    return restore_collection(world.collection(key), world.gateway, log=lines.append)


def omero_state(world, collection):
    return world.gateway.get_state(collection.kind, collection.omero_id)


# -- a) restore of what was never archived, or is online ------------------------------------

def test_restore_of_a_never_archived_collection_is_refused_and_changes_nothing(world):
    key = world.key_where(clean)
    collection = world.collection(key)
    assert collection.state == Collection.ONLINE
    before = world.files(key)
    lines = []
    with pytest.raises(RestoreError) as refused:
        restore(world, key, lines)
    assert str(refused.value) == f"{key}: never archived: nothing to restore"
    collection = world.collection(key)
    assert collection.state == Collection.ONLINE
    assert omero_state(world, collection) is None  # no "archived" annotation in OMERO
    assert not PurgedFile.objects.exists() and not Copy.objects.exists()
    assert world.files(key) == before
    assert not any("restored" in line for line in lines), lines


def test_restore_of_an_archived_collection_whose_files_are_online_changes_nothing(world):
    key = world.key_where(clean)
    location = world.location("hdd")
    world.archive(key, location)
    collection = world.collection(key)
    assert collection.state == Collection.ARCHIVED
    lines = []
    result = restore(world, key, lines)
    assert result.restored == 0
    assert lines == [f"{key}: nothing to restore: its files are online"]
    collection = world.collection(key)
    assert collection.state == Collection.ARCHIVED
    assert omero_state(world, collection) is None  # the restore told OMERO nothing


def test_restore_of_a_never_archived_collection_is_one_line_on_the_command_line(
        world, tmp_path):
    key = world.key_where(clean)
    omerodir = world.omerodir(tmp_path / "omerodir")
    lines = error_lines(run_cli(omerodir, "restore", key))
    assert lines == [f"{key}: never archived: nothing to restore"], lines
    assert world.collection(key).state == Collection.ONLINE


# -- b) a refused archive leaves nothing behind ------------------------------------------------

def test_an_archive_refused_as_the_location_would_be_full_leaves_nothing_and_stays_refused(
        world):
    key = world.key_where(clean)
    small = world.location("hdd", name="small", max_bytes=10)
    write_root = small.backend().write_root
    for _ in range(2):  # run again: still refused (the first run made no copy to resume)
        with pytest.raises(LocationFull, match="maximum size"):
            world.archive(key, small)
        assert not Copy.objects.filter(location=small).exists()
        assert not work_in_progress(small.mount)
        assert not os.listdir(write_root)
    assert world.collection(key).state == Collection.ONLINE


def _one_batch_with_a_checksum(c):
    """Clean, fewer files than a copy worker's batch (batchcopy.BATCH_FILES: the batch
    stops at its first failure, before any of its files is verified), one with OMERO's
    SHA1."""
    return clean(c) and len(c["files"]) < BATCH_FILES and any(
        f["hasher"] == "SHA1-160" and f["size"] > 0 for f in c["files"])


def files_under(top):
    return [os.path.join(d, n) for d, _, names in os.walk(top) for n in names]


def test_an_archive_refused_for_a_damaged_primary_leaves_no_partial_bag(world):
    key = world.key_where(_one_batch_with_a_checksum)
    victim = next(f["path"] for f in world.truth.collections[key]["files"]
                  if f["hasher"] == "SHA1-160" and f["size"] > 0)
    with open(victim, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    location = world.location("hdd")
    write_root = location.backend().write_root
    for _ in range(2):  # refused again: nothing was left to resume
        with pytest.raises(ArchiveError, match="does not match its recorded checksum"):
            world.archive(key, location)
        assert not Copy.objects.filter(location=location).exists()
        assert not CopyFile.objects.exists()
        assert not work_in_progress(location.mount)
        assert not files_under(write_root)
    assert world.collection(key).state == Collection.ONLINE


def test_a_refused_archive_that_verified_files_keeps_them_for_the_rerun(world, monkeypatch):
    """What was verified before a refusal is not thrown away: the copy stays WRITING
    with its rows, and the re-run resumes it into one whole verified copy."""
    key = world.key_where(lambda c: clean(c) and len(c["files"]) > 4)
    location = world.location("hdd")
    real = archive._copy_files

    def fails_after_the_files(todo, writer, copy, workers, progress):
        real(todo, writer, copy, workers, progress)
        cause = PrimaryDamaged("one more file does not match its recorded checksum (test)")
        raise ArchiveError(f"stopped after the copy: {cause}") from cause

    monkeypatch.setattr(archive, "_copy_files", fails_after_the_files)
    with pytest.raises(ArchiveError, match="stopped after the copy"):
        world.archive(key, location)
    [copy] = Copy.objects.filter(location=location)
    assert copy.state == Copy.WRITING and copy.entries.exists()
    monkeypatch.setattr(archive, "_copy_files", real)
    assert world.archive(key, location).state == "archived"
    copy.refresh_from_db()
    assert copy.state == Copy.VERIFIED and Copy.objects.count() == 1
    assert not work_in_progress(location.mount)


def test_an_archive_refused_for_missing_files_leaves_nothing(world):
    key = world.key_where(lambda c: any(f["missing"] for f in c["files"]))
    location = world.location("hdd")
    with pytest.raises(ArchiveError, match="missing from the repository"):
        world.archive(key, location)
    assert not Copy.objects.exists()
    assert not os.listdir(location.backend().write_root)


# -- d) one prefix --------------------------------------------------------------------------

def test_a_command_line_error_names_its_collection_once(world, tmp_path):
    key = world.key_where(lambda c: any(f["missing"] for f in c["files"]))
    world.location("hdd")
    omerodir = world.omerodir(tmp_path / "omerodir")
    [line] = error_lines(run_cli(omerodir, "archive", "--quiet", key))
    assert line.count(key) == 1 and line.startswith(f"{key}: "), line
    assert "missing from the repository" in line, line


def test_the_prefix_is_added_only_when_missing():
    from types import SimpleNamespace

    from omero_storagemanager.verbs.common import keyed

    c = SimpleNamespace(key="Project:1")
    assert keyed(c, ArchiveError("Project:1: 2 file(s) missing")) == "Project:1: 2 file(s) missing"
    assert keyed(c, ArchiveError("location 'x' is full")) == "Project:1: location 'x' is full"
    # Another collection's key is not this one's prefix.
    assert keyed(c, ArchiveError("Project:10: busy")) == "Project:1: Project:10: busy"

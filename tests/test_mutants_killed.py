"""Tests written for the mutants that survived the suite (issue 19, mutation testing).

scripts/mutation.sh runs a sample of mutmut's one-line mutants of the safety-critical
modules against the tests that cover them; each test here was written for a mutant that
passed those tests, checks the behaviour the mutated line is for, and was seen to fail
on that mutant (docs/reliability.md, "Mutation testing (issue 19)", lists them).
"""
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

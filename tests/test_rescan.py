"""Rescan reconciles (issue 20, manual 7.4 and 7.6): bags found are registered, copies
whose bag vanished are marked missing and reported (an error e-mail when a purged
collection lost its last copy), and a location can be removed once nothing depends on
it. The manual's "combine two disks into a new one" workflow, start to end.
"""
import shutil
from pathlib import Path

import pytest
from django.test import override_settings

from omero_storagemanager import preferences
from omero_storagemanager.engine.locations import LocationInUse, remove_location, rescan
from omero_storagemanager.models import Collection, Copy, Location, PurgedFile
from omero_storagemanager.tasks import notify
from tests.test_archive import World, clean, world_of
from tests.test_jobs import Mailbox


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    yield from world_of(World, "resc_", pg_server, tmp_path, request)


def write_root(location):
    return Path(location.mount, str(location.pk), "write")


def clean_keys(world, count):
    keys = [k for k, c in world.truth.collections.items() if clean(c)]
    # Collections sharing nothing with each other, so each purge stands alone.
    chosen = []
    for key in keys:
        files = {f["path"] for f in world.truth.collections[key]["files"]}
        if all(not files & {f["path"] for f in world.truth.collections[k]["files"]}
               for k in chosen):
            chosen.append(key)
        if len(chosen) == count:
            return chosen
    pytest.fail(f"the facility has fewer than {count} independent clean collections")


def test_two_disks_merged_into_a_new_one_then_the_old_ones_removed(world):
    first, second = clean_keys(world, 2)
    before = {key: world.files(key) for key in (first, second)}
    usb1 = world.location("hdd", name="USB 1")
    usb2 = world.location("hdd", name="USB 2")
    world.archive(first, usb1)
    world.archive(second, usb2)
    world.purge(first)
    world.purge(second)
    with pytest.raises(LocationInUse, match="found nowhere else"):
        remove_location(usb1)  # its copy is the only one

    # The admin copies both disks' bags onto a new, larger disk and rescans it.
    big = world.location("hdd", name="Big disk")
    for old in (usb1, usb2):
        shutil.copytree(write_root(old), write_root(big), dirs_exist_ok=True)
    report = rescan(big)
    assert len(report.added) == 2 and report.missing == [] and report.orphaned == []
    assert Copy.objects.filter(location=big, state=Copy.VERIFIED).count() == 2
    assert rescan(big).added == []  # a second rescan finds nothing new

    # The old locations can go now, and their disks with them.
    gone = [usb1.pk, usb2.pk]
    for old in (usb1, usb2):
        disk = Path(old.mount, str(old.pk))
        remove_location(old)
        shutil.rmtree(disk)
    assert not Location.objects.filter(pk__in=gone).exists()
    assert set(PurgedFile.objects.values_list("copy_file__copy__location", flat=True)) == {big.pk}
    for key in (first, second):
        world.restore(key)
        assert world.files(key) == before[key]
        assert world.collection(key).state == Collection.ARCHIVED


def test_a_vanished_copy_is_marked_reported_and_taken_back_when_found(world, tmp_path):
    key, other = clean_keys(world, 2)
    disk = world.location("hdd", name="USB 3")
    spare = world.location("hdd", name="USB 4")
    world.archive(key, disk)
    world.archive(other, disk)
    world.archive(other, spare)  # `other` has a second copy
    world.purge(key)
    world.purge(other)
    away = tmp_path / "away"
    away.mkdir()
    bags = sorted(Copy.objects.filter(location=disk).values_list("bag_path", flat=True))
    for i, rel in enumerate(bags):  # someone deleted the bags from the disk
        shutil.move(str(write_root(disk) / rel), str(away / str(i)))

    report = rescan(disk)
    assert sorted(report.missing) == bags
    assert report.orphaned == [key]  # `other` still has its copy on USB 4
    assert set(Copy.objects.filter(location=disk).values_list("state", flat=True)) == {"missing"}
    # No copy left to restore `key` from: it waits, it does not take a missing copy.
    with pytest.raises(Exception, match="no verified copy|no usable"):
        world.restore(key)

    # The e-mail: an error naming the collection that lost its last copy.
    box = Mailbox()
    try:
        preferences.set_many({"admin_emails": ["storage-admin@example.org"]})
        with override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=box.port):
            job = type("J", (), {"location": disk})
            notify.copies_missing(job, report)
        [(_, mail)] = box.wait_for("lost their last copy")
        assert key in mail and "cannot be restored" in mail
    finally:
        box.stop()

    for i, rel in enumerate(bags):  # the bags are put back
        shutil.move(str(away / str(i)), str(write_root(disk) / rel))
    report = rescan(disk)
    assert len(report.back) == len(bags) and report.missing == []
    assert set(Copy.objects.filter(location=disk).values_list("state", flat=True)) == {"verified"}
    world.restore(key)
    assert world.collection(key).state == Collection.ARCHIVED


def test_tape_copies_gone_from_write_are_on_tape_not_missing(world):
    key = clean_keys(world, 1)[0]
    tape = world.location("tape", name="Tape library")
    world.archive(key, tape)
    for bag in Copy.objects.filter(location=tape).values_list("bag_path", flat=True):
        shutil.rmtree(write_root(tape) / bag)  # the tape software empties write/
        cached = write_root(tape).parent / "read" / bag
        if cached.exists():
            shutil.rmtree(cached)  # and the read cache was purged: on tape only
    report = rescan(tape)
    assert report.missing == [] and report.orphaned == []
    assert Copy.objects.get(location=tape).state == Copy.VERIFIED

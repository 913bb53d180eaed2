"""Tape and automated capacity that matches the medium (issue 20, manual 7.2, 7.5).

The maximum size of a tape location is its cache disk's: what counts is what write/ and
read/ hold now. Over months the tape software empties write/ and the cache purge empties
read/, so a location that archived far more than its size in total keeps taking new
copies; copies in neither place are "on the archive medium only" and a restore waits
for them to come back from tape.
"""
import os
import shutil
from pathlib import Path

import pytest

from omero_storagemanager.engine.archive import LocationFull
from omero_storagemanager.engine.capacity import measure
from omero_storagemanager.engine.locations import purge_read_cache
from omero_storagemanager.engine.restore import RestoreWaiting
from omero_storagemanager.models import Copy
from omero_storagemanager.tasks.waiting import describe
from omero_storagemanager.views.status import locations_status
from tests.test_archive import World, world_of
from tests.test_rescan import clean_keys


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    yield from world_of(World, "capa_", pg_server, tmp_path, request)


def size_of(world, key):
    return sum(os.path.getsize(f["path"]) for f in world.truth.collections[key]["files"]
               if not f["missing"])


def area(location, name):
    return Path(location.mount, str(location.pk), name)


def test_a_tape_cache_keeps_taking_copies_as_the_tape_software_empties_it(world, tmp_path):
    first = clean_keys(world, 1)[0]  # purged and restored at the end
    keys = [first] + [k for k, c in world.truth.collections.items() if k != first
                      and c["files"] and not any(f["missing"] or "db_size" in f
                                                 for f in c["files"])][:3]
    assert len(keys) == 4, "the facility has fewer than 4 collections to archive"
    sizes = {key: size_of(world, key) for key in keys}
    # Room for one copy at a time (written to write/ and to read/), with some slack;
    # all four copies together are far more than that.
    room = 2 * max(sizes.values()) + 64 * 1024
    assert sum(sizes.values()) > room, "the facility's collections are too small for this test"
    tape = world.location("tape", name="Tape library", max_bytes=room, purge_watermark=1,
                          purge_enabled=True)
    shelf = tmp_path / "tape"  # what the tape software wrote to tape
    before = world.files(first)
    world.archive(first, tape)
    world.purge(first)  # while its copy is on the cache disk
    with pytest.raises(LocationFull, match="purge its read cache"):
        world.archive(keys[1], tape)  # the cache disk is full now: refused before writing

    for key in keys[1:]:
        for copy in Copy.objects.filter(location=tape):  # the tape software's night
            written = area(tape, "write") / copy.bag_path
            if written.exists():
                shutil.copytree(written, shelf / copy.bag_path)
                shutil.rmtree(written)
        purge_read_cache(tape)  # the cache purge, down to the watermark
        world.archive(key, tape)  # room again: the medium holds the rest

    tape.refresh_from_db()
    usage = measure(tape)
    last = Copy.objects.filter(location=tape).order_by("-pk").first()
    # Only the newest copy is on the cache disk (its payload and the bag's tag files).
    assert usage.write_bytes == usage.read_bytes
    assert last.bytes <= usage.read_bytes < last.bytes + 64 * 1024
    assert usage.medium_only_copies == 3
    assert usage.medium_only_bytes == sum(c.bytes for c in Copy.objects.filter(location=tape)
                                          if c.pk != last.pk)
    [shown] = [e for e in locations_status(admin=False) if e["id"] == tape.pk]
    assert shown["used_bytes"] == usage.cache_used <= tape.max_bytes
    assert shown["medium_only_copies"] == 3 and shown["measured_at"] is not None

    # The purged collection's copy is on tape only: the restore waits for the tape.
    with pytest.raises(RestoreWaiting) as waiting:
        world.restore(first)
    assert describe(None, waiting.value)[0] == "cache"
    [copy] = Copy.objects.filter(location=tape, collection=world.collection(first))
    shutil.copytree(shelf / copy.bag_path, area(tape, "read") / copy.bag_path)  # from tape
    world.restore(first)
    assert world.files(first) == before

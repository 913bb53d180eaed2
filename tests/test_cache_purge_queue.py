"""The read-cache purge never removes a copy the tape has not taken yet (issue 20).

A tape or automated location writes each copy to write/ (the tape software or archiver
takes it to the medium, then removes it there) and to read/ (the read cache restores
read from). While a copy is still in write/, the medium does not hold it: its read/ copy
is the one the app restores from, and a restore of it could only ask an administrator to
bring back from tape something no tape holds. So the purge down to the watermark (manual
7.5, chapter 14's 22:30 run) evicts, oldest first, only copies no longer in write/, and
says what it kept.
"""
import shutil
from pathlib import Path

import pytest

from omero_storagemanager.engine.locations import purge_read_cache
from omero_storagemanager.models import Copy
from tests.test_archive import World, clean, world_of

@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    yield from world_of(World, "cpq_", pg_server, tmp_path, request)


def area(location, name):
    return Path(location.mount, str(location.pk), name)


def tape_software_night(location, tape):
    """What the tape software does once a day: write/ to tape, then write/ emptied."""
    write = area(location, "write")
    for copy in Copy.objects.filter(location=location):
        if (write / copy.bag_path).exists():
            shutil.copytree(write / copy.bag_path, tape / copy.bag_path)
            shutil.rmtree(write / copy.bag_path)


@pytest.mark.parametrize("kind", ["tape", "automated"])
def test_the_cache_purge_keeps_what_the_medium_has_not_taken_yet(world, tmp_path, kind):
    sizes = {k: sum(f["size"] for f in c["files"])
             for k, c in world.truth.collections.items() if clean(c)}
    keys = sorted(sizes, key=sizes.get, reverse=True)[:2]
    assert len(keys) == 2, "the facility has fewer than 2 clean collections"
    # Room for both copies twice (write/ and read/); a watermark of 1 % of that is less
    # than either copy, so each one in read/ is over it.
    room = 4 * sum(sizes[k] for k in keys)
    assert min(sizes[k] for k in keys) > room // 100, sizes
    location = world.location(kind, max_bytes=room, purge_watermark=1, purge_enabled=True)
    older = Copy.objects.get(pk=world.archive(keys[0], location).copy_id)
    tape_software_night(location, tmp_path / "tape")  # the older copy is on the medium
    newer = Copy.objects.get(pk=world.archive(keys[1], location).copy_id)

    result = purge_read_cache(location)
    assert result.evicted == [older.bag_path]
    assert result.kept == [newer.bag_path]  # still in write/: not on the medium yet
    assert not (area(location, "read") / older.bag_path).exists()
    assert (area(location, "read") / newer.bag_path / "bagit.txt").is_file()
    assert (area(location, "write") / newer.bag_path / "bagit.txt").is_file()

    assert purge_read_cache(location).evicted == []  # nothing more until the medium has it
    tape_software_night(location, tmp_path / "tape")
    again = purge_read_cache(location)
    assert again.evicted == [newer.bag_path] and again.kept == []
    assert not any((area(location, "read") / c.bag_path).exists() for c in (older, newer))

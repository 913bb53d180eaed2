"""The read-cache purge leaves the copies a restore needs (issue 20, chapter 15).

A copy the jukebox (or the tape software) brought back into read/ for a waiting restore
keeps the datetime it was archived at, so it is the oldest bag in the cache: the nightly
cache purge, run before the restore's next look, would evict it first, dropping the
restore order, and the restore would ask the jukebox again (and again, as long as the
timing repeats). The purge skips bags holding files that an active restore (queued,
running or waiting) still has to bring back; once the restore is over they go as usual.
"""
import shutil
from pathlib import Path

import pytest

from omero_storagemanager.engine.locations import purge_read_cache
from omero_storagemanager.models import Copy, Job
from tests.test_archive import World, world_of
from tests.test_rescan import clean_keys


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    yield from world_of(World, "cacherest_", pg_server, tmp_path, request)


def test_the_cache_purge_keeps_what_a_restore_waits_for_until_it_is_over(world):
    wanted, other = clean_keys(world, 2)
    jukebox = world.location("automated", name="BluRay Archive", max_bytes=10**9,
                             purge_watermark=1, purge_enabled=True)
    world.archive(wanted, jukebox)
    world.archive(other, jukebox)
    world.purge(wanted)
    jukebox.max_bytes = 1000  # the watermark (1 %) is 10 bytes now: everything is over it
    jukebox.save()
    read = Path(jukebox.mount, str(jukebox.pk), "read")
    bags = {key: Copy.objects.get(location=jukebox, collection=world.collection(key)).bag_path
            for key in (wanted, other)}
    for bag in bags.values():  # the archiver burned both: write/ emptied (else kept)
        shutil.rmtree(Path(jukebox.mount, str(jukebox.pk), "write", bag))

    restore = Job.objects.create(kind="restore", state=Job.WAITING)
    restore.collections.add(world.collection(wanted))
    result = purge_read_cache(jukebox)
    assert result.evicted == [bags[other]]
    assert (read / bags[wanted] / "bagit.txt").is_file()

    Job.objects.filter(pk=restore.pk).update(state=Job.DONE)
    result = purge_read_cache(jukebox)
    assert result.evicted == [bags[wanted]]
    assert not (read / bags[wanted]).exists()

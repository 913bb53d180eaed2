"""The read-cache purge, for any sequence of nights (issue 20, manual 7.2, 7.5).

Copies of random sizes are archived into a tape location's write/ and read/, the tape
software runs on some nights and not on others, and the location purge runs in between.
Whatever the order, after each purge:

- no copy still in write/ (not on tape yet) has left read/;
- read/ is under the watermark, or everything over it is still in write/;
- what was evicted is older than every copy on tape left in read/ (oldest first);
- every copy ever made is in read/, in write/ or on tape.
"""
import hashlib
import itertools
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omero_storagemanager.backends.base import walk_bags
from omero_storagemanager.backends.bag import BagWriter
from omero_storagemanager.backends.fsutil import tree_bytes
from omero_storagemanager.backends.layout import Order
from omero_storagemanager.engine.locations import add_location, purge_read_cache
from omero_storagemanager.models import Location

INFO = {"External-Identifier": "Project:1", "Bagging-Date": "2027-01-05"}
NIGHTS = st.lists(st.tuples(st.lists(st.integers(1, 64), max_size=3),  # KiB of each copy
                            st.booleans(),  # the tape software ran
                            st.booleans()),  # the location purge ran
                  min_size=1, max_size=8)
_SERIAL = itertools.count()


def archive(backend, relpath, kib):
    """What an archive does to a tape location: a verified bag in write/, then read/."""
    data = bytes(range(256)) * (4 * kib)
    writer = BagWriter(backend.bag_dir(relpath))
    writer.payload_path("Pixels/Dir-001/1").write_bytes(data)
    writer.record("Pixels/Dir-001/1", hashlib.sha1(data).hexdigest(), len(data))
    writer.finish(dict(INFO))
    backend.publish(relpath, Order.from_relpath(relpath))


def bags(root):
    return {rel: tree_bytes(path) for rel, path in walk_bags(root)}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(nights=NIGHTS, watermark=st.integers(1, 60))
def test_the_cache_purge_never_evicts_what_the_tape_has_not_taken(app_db, tmp_path, nights,
                                                                   watermark):
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    (root / "mnt").mkdir()
    location = add_location(f"tape {next(_SERIAL)}", "tape", str(root / "mnt"), 2**20,
                            purge_watermark=watermark, purge_enabled=True)
    backend = location.backend()
    tape, made, created = root / "tape", set(), {}
    limit = location.max_bytes * watermark // 100
    when = datetime(2027, 1, 5)
    try:
        for copies, tape_ran, purged in nights:
            for kib in copies:
                when += timedelta(minutes=1)
                relpath = f"project/3/2/{len(made) + 1}/{when:%d-%m-%Y_%H%M%S}"
                archive(backend, relpath, kib)
                made.add(relpath)
                created[relpath] = when
            if tape_ran:  # to tape, then write/ emptied
                for rel in bags(backend.write_root):
                    shutil.copytree(backend.write_root / rel, tape / rel)
                    shutil.rmtree(backend.write_root / rel)
            if not purged:
                continue
            before, queued = bags(backend.read_root), bags(backend.write_root)
            result = purge_read_cache(location)
            read = bags(backend.read_root)
            assert set(queued) <= set(read), "a copy not on tape yet left the cache"
            assert set(result.evicted) == set(before) - set(read)
            if sum(read.values()) > limit:
                assert set(read) <= set(queued), (read, queued, limit)
            on_tape_left = [created[rel] for rel in set(read) - set(queued)]
            if result.evicted and on_tape_left:
                assert max(created[rel] for rel in result.evicted) <= min(on_tape_left)
            on_tape = {rel for rel, _ in walk_bags(tape)} if tape.exists() else set()
            assert made <= set(read) | set(bags(backend.write_root)) | on_tape
    finally:
        Location.objects.filter(pk=location.pk).delete()
        shutil.rmtree(root)

"""Tape locations: a verified copy in the read cache, restores from it, a request to
restore from tape once it was purged from the cache."""
import os
import shutil
from datetime import datetime

import bagit
import pytest

from omero_storagemanager.backends import CorruptCopy, LocationError, Order
from omero_storagemanager.backends.bag import validate_bag
from omero_storagemanager.backends.fsutil import tree_bytes

from .conftest import FILES, RELPATH, flip_a_bit, write_bag

ORDER = Order.from_relpath(RELPATH)
PIXELS = "data/Pixels/Dir-001/1000"


@pytest.fixture
def tape(make_location):
    return make_location("tape", name="Tape cache")


def test_publish_copies_the_bag_into_the_read_cache(tape):
    bag = write_bag(tape.bag_dir(RELPATH))
    os.chmod(bag / PIXELS, 0o640)
    tape.publish(RELPATH, ORDER)
    cached = tape.read_root / RELPATH
    assert validate_bag(cached) == []
    bagit.Bag(str(cached)).validate()
    assert sorted(os.listdir(cached)) == sorted(os.listdir(bag))
    assert (cached / PIXELS).read_bytes() == FILES["Pixels/Dir-001/1000"]
    assert oct((cached / PIXELS).stat().st_mode & 0o777) == "0o640"
    assert (cached / PIXELS).stat().st_mtime_ns == (bag / PIXELS).stat().st_mtime_ns
    assert not os.path.exists(str(cached) + ".partial")
    assert tape.restore_source(RELPATH) == cached
    assert (bag / PIXELS).exists()  # write/ is left for the tape software


def test_publish_refuses_a_damaged_write_copy(tape):
    bag = write_bag(tape.bag_dir(RELPATH))
    flip_a_bit(bag / PIXELS)
    with pytest.raises(CorruptCopy, match="does not match the bag's manifest"):
        tape.publish(RELPATH, ORDER)
    assert os.listdir(tape.read_root / "project/2/2/101") == []  # no copy, no .partial
    (bag / PIXELS).unlink()
    with pytest.raises(CorruptCopy, match="is damaged: .*missing"):
        tape.publish(RELPATH, ORDER)


def test_publish_is_idempotent(tape):
    write_bag(tape.bag_dir(RELPATH))
    tape.publish(RELPATH, ORDER)
    cached = tape.read_root / RELPATH / PIXELS
    before = cached.stat().st_ino
    tape.publish(RELPATH, ORDER)
    assert cached.stat().st_ino == before  # kept, not copied again
    # The tape software took write/ away: the cache copy still counts as published.
    shutil.rmtree(tape.write_root / RELPATH)
    tape.publish(RELPATH, ORDER)
    assert cached.stat().st_ino == before


def test_publish_replaces_a_damaged_cache_copy_and_a_leftover_partial(tape):
    write_bag(tape.bag_dir(RELPATH))
    tape.publish(RELPATH, ORDER)
    cached = tape.read_root / RELPATH
    flip_a_bit(cached / PIXELS)
    leftover = tape.read_root / (RELPATH + ".partial")
    leftover.mkdir()
    (leftover / "half").write_text("killed mid-copy")
    tape.publish(RELPATH, ORDER)
    assert validate_bag(cached) == [] and not leftover.exists()
    assert sorted(os.listdir(cached.parent)) == [cached.name]


def test_a_damaged_cache_copy_without_its_write_copy_is_refused(tape):
    write_bag(tape.bag_dir(RELPATH))
    tape.publish(RELPATH, ORDER)
    shutil.rmtree(tape.write_root / RELPATH)
    flip_a_bit(tape.read_root / RELPATH / PIXELS)
    with pytest.raises(CorruptCopy, match="no complete bag"):
        tape.publish(RELPATH, ORDER)


def test_restore_after_eviction_asks_for_the_tape(tape):
    write_bag(tape.bag_dir(RELPATH))
    tape.publish(RELPATH, ORDER)
    tape.evict(RELPATH)
    assert tape.restore_source(RELPATH) is None
    write = tape.write_root / RELPATH
    read = tape.read_root / RELPATH
    assert tape.request_restore(RELPATH, ORDER) == \
        f"restore {write} from tape into {read} (tape cache 'Tape cache' (id 3))"
    # The administrator restores half of it: not a copy yet.
    shutil.copytree(write, read)
    (read / PIXELS).unlink()
    assert tape.restore_source(RELPATH) is None
    assert "is there but not complete yet" in tape.request_restore(RELPATH, ORDER)
    shutil.copy2(write / PIXELS, read / PIXELS)
    assert tape.restore_source(RELPATH) == read
    assert tape.request_restore(RELPATH, ORDER).startswith("the copy is ready")


def test_restore_source_does_not_read_the_write_area(tape):
    # write/ is being taken away by the tape software: restores read the cache only.
    write_bag(tape.bag_dir(RELPATH))
    assert tape.restore_source(RELPATH) is None


def test_offline_cache(tmp_path, tape):
    write_bag(tape.bag_dir(RELPATH))
    tape.publish(RELPATH, ORDER)
    os.rename(tape.root, tmp_path / "away")
    assert tape.restore_source(RELPATH) is None
    assert tape.request_restore(RELPATH, ORDER) == \
        f"mount tape cache 'Tape cache' (id 3): {tape.root} is missing"


def test_cache_bags_oldest_first_with_their_bytes(tape):
    paths = ["project/2/2/101/16-11-2009_154634", "screen/3/4/5/01-01-2008_000000",
             "project/2/2/102/31-12-2009_235959"]
    for i, relpath in enumerate(paths):
        write_bag(tape.bag_dir(relpath), {"Pixels/Dir-000/%d" % i: b"x" * (i + 1) * 1000})
        tape.publish(relpath, Order.from_relpath(relpath))
    bags = tape.cache_bags()
    assert [b.relpath for b in bags] == [paths[1], paths[0], paths[2]]
    assert bags[0].created == datetime(2008, 1, 1, 0, 0, 0)
    for bag in bags:
        assert bag.bytes == tree_bytes(tape.read_root / bag.relpath) > 0


def test_evict_removes_the_cache_copy_only(tape):
    write_bag(tape.bag_dir(RELPATH))
    tape.publish(RELPATH, ORDER)
    tape.evict(RELPATH)
    assert not (tape.read_root / RELPATH).exists()
    assert os.listdir(tape.read_root / "project/2/2/101") == []  # no .evicting left
    assert validate_bag(tape.write_root / RELPATH) == []
    assert tape.cache_bags() == []
    tape.evict(RELPATH)  # again: nothing to do


def test_evict_finishes_an_interrupted_eviction(tape):
    write_bag(tape.bag_dir(RELPATH))
    tape.publish(RELPATH, ORDER)
    cached = tape.read_root / RELPATH
    os.rename(cached, str(cached) + ".evicting")  # killed after the rename
    assert tape.cache_bags() == [] and tape.restore_source(RELPATH) is None
    tape.evict(RELPATH)
    assert os.listdir(cached.parent) == []


def test_evict_refuses_a_copy_still_arriving(tape):
    write_bag(tape.bag_dir(RELPATH))
    arriving = tape.read_root / RELPATH
    arriving.mkdir(parents=True)
    (arriving / "data").mkdir()
    with pytest.raises(LocationError, match="not a complete bag"):
        tape.evict(RELPATH)
    assert arriving.exists()


def test_find_bags_sees_both_areas(tape):
    write_bag(tape.bag_dir(RELPATH))
    tape.publish(RELPATH, ORDER)
    assert [(f.area, f.relpath) for f in tape.find_bags()] == \
        [("write", RELPATH), ("read", RELPATH)]

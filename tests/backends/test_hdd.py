"""(Removable) HDD locations: copies stay in write/, restores wait for the disk."""
import os

import pytest

from omero_storagemanager.backends import CorruptCopy, LocationError, Order

from .conftest import RELPATH, write_bag

ORDER = Order.from_relpath(RELPATH)


def test_publish_leaves_the_copy_in_write_only(make_location):
    disk = make_location("hdd")
    bag = write_bag(disk.bag_dir(RELPATH))
    disk.publish(RELPATH, ORDER)
    assert os.listdir(disk.read_root) == []
    assert disk.restore_source(RELPATH) == bag


def test_publish_refuses_a_missing_or_unfinished_bag(make_location):
    disk = make_location("hdd")
    with pytest.raises(CorruptCopy, match="no complete bag"):
        disk.publish(RELPATH, ORDER)
    bag = write_bag(disk.bag_dir(RELPATH))
    os.rename(bag, str(bag) + ".partial")
    with pytest.raises(CorruptCopy):
        disk.publish(RELPATH, ORDER)


def test_restore_needs_the_disk_connected(tmp_path, make_location):
    disk = make_location("hdd")
    bag = write_bag(disk.bag_dir(RELPATH))
    # Unplug: the disk's files go with it, the mount point stays, empty.
    os.rename(disk.root, tmp_path / "unplugged")
    assert disk.restore_source(RELPATH) is None
    assert disk.request_restore(RELPATH, ORDER) == \
        f"connect archive disk 'Disk 3' (id 3): {disk.root} is missing"
    os.rename(tmp_path / "unplugged", disk.root)
    assert disk.restore_source(RELPATH) == bag
    assert disk.request_restore(RELPATH, ORDER) == f"the copy is ready at {bag}"


def test_restore_source_ignores_an_incomplete_copy(make_location):
    disk = make_location("hdd")
    bag = write_bag(disk.bag_dir(RELPATH))
    (bag / "data/Pixels/Dir-001/1000").unlink()
    assert disk.restore_source(RELPATH) is None
    message = disk.request_restore(RELPATH, ORDER)
    assert message.startswith("archive disk 'Disk 3' (id 3) is connected but holds no "
                              f"complete copy at {bag}")


def test_disks_sharing_a_mount_point_are_told_apart_by_their_id(tmp_path, make_location):
    disk3 = make_location("hdd", id=3, name="Disk 3", mount=tmp_path / "usb")
    disk4 = make_location("hdd", id=4, name="Disk 4", mount=tmp_path / "usb",
                          initialize=False)
    assert disk3.is_online() and not disk4.is_online()
    assert "connect archive disk 'Disk 4' (id 4)" in disk4.request_restore(RELPATH, ORDER)


def test_no_read_cache(make_location):
    disk = make_location("hdd")
    write_bag(disk.bag_dir(RELPATH))
    assert disk.cache_bags() == []
    with pytest.raises(LocationError, match="has no read cache"):
        disk.evict(RELPATH)
    assert disk.restore_source(RELPATH) is not None


def test_find_bags_rebuilds_the_catalogue(make_location):
    disk = make_location("hdd")
    write_bag(disk.bag_dir(RELPATH))
    (found,) = disk.find_bags()
    assert (found.area, found.relpath) == ("write", RELPATH)
    assert found.contents.first("OMERO-Owner") == "alice (id 2)"

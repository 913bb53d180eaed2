"""Online (symlink) locations: copies stay in write/, and purged files become links to
them, so the bags must stay whole and are never evicted."""
import os

import pytest

from omero_storagemanager.backends import BadPath, CorruptCopy, LocationError, LocationOffline
from omero_storagemanager.backends import Order

from .conftest import FILES, RELPATH, write_bag

ORDER = Order.from_relpath(RELPATH)
PIXELS = "Pixels/Dir-001/1000"


def test_publish_restore_and_no_read_cache(make_location):
    archive = make_location("symlink", name="Online")
    bag = write_bag(archive.bag_dir(RELPATH))
    archive.publish(RELPATH, ORDER)
    assert os.listdir(archive.read_root) == []
    assert archive.restore_source(RELPATH) == bag
    assert archive.cache_bags() == []
    with pytest.raises(LocationError, match="has no read cache"):
        archive.evict(RELPATH)
    assert [(f.area, f.relpath) for f in archive.find_bags()] == [("write", RELPATH)]


def test_link_target_is_the_file_in_the_bag(tmp_path, make_location):
    archive = make_location("symlink", name="Online")
    bag = write_bag(archive.bag_dir(RELPATH))
    target = archive.link_target(RELPATH, PIXELS)
    assert target == bag / "data" / PIXELS and target.is_absolute()
    # What purge does with it: OMERO then reads the archived file through the link.
    primary = tmp_path / "OMERO/Pixels/Dir-001/1000"
    primary.parent.mkdir(parents=True)
    os.symlink(target, primary)
    assert primary.read_bytes() == FILES[PIXELS]


def test_link_target_refusals(make_location):
    archive = make_location("symlink", name="Online")
    bag = write_bag(archive.bag_dir(RELPATH))
    with pytest.raises(LocationError, match="is not in the copy"):
        archive.link_target(RELPATH, "Pixels/Dir-001/9999")
    with pytest.raises(BadPath):
        archive.link_target(RELPATH, "../../../../etc/passwd")
    (bag / "data" / PIXELS).unlink()
    with pytest.raises(CorruptCopy, match="no complete bag"):
        archive.link_target(RELPATH, PIXELS)


def test_offline_archive(tmp_path, make_location):
    archive = make_location("symlink", name="Online")
    write_bag(archive.bag_dir(RELPATH))
    os.rename(archive.root, tmp_path / "away")
    with pytest.raises(LocationOffline, match="online archive 'Online' \\(id 3\\) is not mounted"):
        archive.link_target(RELPATH, PIXELS)
    assert archive.restore_source(RELPATH) is None
    assert archive.request_restore(RELPATH, ORDER) == \
        f"mount online archive 'Online' (id 3): {archive.root} is missing"

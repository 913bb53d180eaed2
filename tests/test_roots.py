"""Restore writes only into the repository it archived from, beneath its roots, and
only from a location disk that is the location's (issue 19, findings 3 and 7).

    - a directory of the repository (or of a bag) replaced by a symbolic link: restore
      refuses that file, with the link named, and writes nothing outside the root;
    - the repository not mounted (an empty directory at its path), or on another
      device: restore refuses with one line before touching anything;
    - a location disk whose marker is not the location's: refused; a location made
      before markers gets one at its first check.

Real files, a real OMERO-shaped database (World, as in tests/test_archive.py).
"""
import os
import stat

import pytest

from omero_storagemanager.backends.base import MARKER as LOCATION_MARKER
from omero_storagemanager.backends.base import LocationOffline, WrongDisk
from omero_storagemanager.backends.hdd import HddBackend
from omero_storagemanager.engine import roots
from omero_storagemanager.engine.archive import ArchiveError
from omero_storagemanager.engine.restore import (RestoreError, RestoreWaiting,
                                                 restore_collection)
from omero_storagemanager.models import Collection, Copy, Location, PurgedFile, RepositoryRoot
from tests.test_archive import World as ArchiveWorld, _quiet, clean

GB = 10**9


class World(ArchiveWorld):
    """tests/test_archive.py's World, whose restore is given the facility's paths."""

    def restore(self, key, paths="world"):
        return restore_collection(self.collection(key), self.gateway, log=_quiet,
                                  paths=self.paths if paths == "world" else paths)

    def archived_and_purged(self, type="hdd"):
        """(key, location, purged rows) of a clean collection archived and purged."""
        key = self.key_where(clean)
        location = self.location(type)
        self.archive(key, location)
        self.purge(key)
        rows = list(PurgedFile.objects.filter(collection=self.collection(key)))
        assert rows and not any(os.path.lexists(r.path) for r in rows)
        return key, location, rows


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    name = "roots_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    w = World(pg_server, name, tmp_path)
    yield w
    w.conn.close()
    pg_server.drop_database(name)


def snapshot(top):
    out = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, top)] = (
                os.readlink(path) if os.path.islink(path)
                else open(path, "rb").read() if os.path.isfile(path) else None)
    return out


# -- restore stays beneath the repository's roots (finding 3) ----------------------------


def test_restore_never_writes_through_a_symlinked_directory_of_the_repository(world):
    key, _, rows = world.archived_and_purged()
    row = max(rows, key=lambda r: r.path.count("/"))  # the deepest file
    folder = os.path.dirname(row.path)
    sentinel = world.root / "sentinel"
    sentinel.mkdir()
    if os.path.isdir(folder):
        os.rename(folder, sentinel / "moved")
    else:
        (sentinel / "moved").mkdir()
    os.symlink(sentinel / "moved", folder)  # an admin, a tool, or a user did this
    before = snapshot(sentinel)
    with pytest.raises(RestoreError) as refused:
        world.restore(key)
    assert folder in str(refused.value) and "symbolic link" in str(refused.value)
    assert snapshot(sentinel) == before  # nothing written outside the repository
    assert PurgedFile.objects.get(pk=row.pk).state != PurgedFile.RESTORED
    assert world.collection(key).state == Collection.RESTORING  # not "archived"
    others = [r for r in rows if not r.path.startswith(folder + "/")]
    assert all(os.path.isfile(r.path) for r in others)  # the other files came back
    # The link replaced by the real directory: the restore completes.
    os.unlink(folder)
    os.rename(sentinel / "moved", folder)
    world.restore(key)
    assert world.collection(key).state == Collection.ARCHIVED
    assert os.path.isfile(row.path) and not os.path.islink(folder)


def test_restore_never_reads_through_a_symlinked_directory_in_the_bag(world, monkeypatch):
    key, location, rows = world.archived_and_purged()
    copy = Copy.objects.get(collection=world.collection(key))
    row = rows[0]
    data = os.path.join(location.mount, str(location.pk), "write", copy.bag_path, "data")
    folder = os.path.join(data, os.path.dirname(row.relpath))
    elsewhere = world.root / "elsewhere"
    os.rename(folder, elsewhere)  # the same bytes, reached through a link
    os.symlink(elsewhere, folder)
    # The link is made just after the backend found the bag whole (its check walks the
    # bag without following links, so it would say the copy is incomplete): the copy
    # worker itself must refuse it.
    monkeypatch.setattr(HddBackend, "_usable", lambda self, path: path)
    with pytest.raises(RestoreError) as refused:
        world.restore(key)
    assert folder in str(refused.value) and "symbolic link" in str(refused.value)
    assert not os.path.lexists(row.path)


# -- the repository is the one archived from (finding 7) --------------------------------


def test_archive_records_each_root_with_its_device_and_a_private_marker(world):
    key, _, _ = world.archived_and_purged()
    for root in (world.paths.data_dir, world.paths.managed_dir):
        record = RepositoryRoot.objects.get(path=root)
        marker = os.path.join(root, roots.MARKER)
        assert record.device == os.stat(root).st_dev
        assert open(marker).read().strip() == record.marker
        assert stat.S_IMODE(os.stat(marker).st_mode) == 0o600
    markers = set(RepositoryRoot.objects.values_list("marker", flat=True))
    other = world.key_where(lambda c: clean(c) and c is not world.truth.collections[key])
    world.archive(other, Location.objects.get(current=True))
    assert set(RepositoryRoot.objects.values_list("marker", flat=True)) == markers


def test_restore_into_an_unmounted_repository_is_refused_before_writing(world):
    key, _, rows = world.archived_and_purged()
    before = sorted(PurgedFile.objects.filter(collection=world.collection(key))
                    .values_list("pk", "state"))
    state = world.collection(key).state
    data_dir = world.paths.data_dir
    os.rename(data_dir, data_dir + ".share")  # the share is not mounted: only the
    os.mkdir(data_dir)                        # mount point, empty, is there
    for paths in ("world", None):  # given, or the configuration's (the facility's
        with pytest.raises(RestoreError) as refused:  # roots are known by their rows)
            world.restore(key, paths=paths)
        assert str(refused.value) == (
            f"the repository {data_dir} is not the one archived from (marker missing: "
            "is the share mounted?); nothing was restored")
        assert os.listdir(data_dir) == []  # nothing landed on the mount point
    assert sorted(PurgedFile.objects.filter(collection=world.collection(key))
                  .values_list("pk", "state")) == before
    assert world.collection(key).state == state  # not even "restoring"
    with pytest.raises(ArchiveError, match="not the one archived from"):
        world.archive(key, Location.objects.get(current=True))  # nor read from it
    assert os.listdir(data_dir) == []
    os.rmdir(data_dir)
    os.rename(data_dir + ".share", data_dir)  # mounted again
    world.restore(key)
    assert all(os.path.isfile(r.path) for r in rows)
    assert world.collection(key).state == Collection.ARCHIVED


def test_a_repository_unmounted_during_a_restore_stops_it_before_the_mount_point_is_written(
        world):
    """Found by the model-based long form (seeds 6 and 7): the share goes away after the
    restore's first check, before it writes anything."""
    from omero_storagemanager.engine.progress import NullProgress

    key, _, rows = world.archived_and_purged()
    data_dir = world.paths.data_dir

    class Unmounting(NullProgress):
        def start(self, total):  # the restore has checked the roots and planned
            os.rename(data_dir, data_dir + ".share")
            os.mkdir(data_dir)

    with pytest.raises(RestoreError, match="the restore stopped there; run it again"):
        restore_collection(world.collection(key), world.gateway, log=_quiet,
                           paths=world.paths, progress=Unmounting())
    assert os.listdir(data_dir) == []  # nothing landed on the bare mount point
    os.rmdir(data_dir)
    os.rename(data_dir + ".share", data_dir)
    world.restore(key)
    assert all(os.path.isfile(r.path) for r in rows)


def test_restore_refuses_a_repository_with_another_marker_or_on_another_device(world):
    key, _, rows = world.archived_and_purged()
    managed = world.paths.managed_dir
    marker = os.path.join(managed, roots.MARKER)
    good = open(marker).read()
    os.chmod(marker, 0o600)
    with open(marker, "w") as f:
        f.write("another repository's marker\n")
    with pytest.raises(RestoreError, match=f"the repository {managed} is not the one "
                                           r"archived from \(marker another"):
        world.restore(key)
    with open(marker, "w") as f:
        f.write(good)
    record = RepositoryRoot.objects.get(path=world.paths.data_dir)
    RepositoryRoot.objects.filter(pk=record.pk).update(device=record.device + 1)
    with pytest.raises(RestoreError, match=r"\(device .* instead of .*: is the share "
                                           "mounted"):
        world.restore(key)
    assert not any(os.path.lexists(r.path) for r in rows)
    RepositoryRoot.objects.filter(pk=record.pk).update(device=record.device)
    world.restore(key)
    assert all(os.path.isfile(r.path) for r in rows)


# -- the location's disk is the location's ----------------------------------------------


def test_a_location_disk_with_another_marker_is_refused(world):
    key, location, rows = world.archived_and_purged()
    marker = os.path.join(location.mount, str(location.pk), LOCATION_MARKER)
    assert location.marker and open(marker).read().strip() == location.marker
    # Another installation's disk with a location of the same id, mounted there.
    os.rename(marker, marker + ".ours")
    with open(marker, "w") as f:
        f.write("some other disk\n")
    location = Location.objects.get(pk=location.pk)
    with pytest.raises(WrongDisk, match="not this location's") as refused:
        location.backend().check_online()
    assert isinstance(refused.value, LocationOffline) and "some other disk" in str(
        refused.value)
    assert not location.backend().is_online()
    with pytest.raises(RestoreWaiting, match="not this location's"):
        world.restore(key)
    assert not any(os.path.lexists(r.path) for r in rows)
    other = world.key_where(lambda c: clean(c) and c is not world.truth.collections[key])
    with pytest.raises(WrongDisk):
        world.archive(other, location)
    os.unlink(marker)  # no marker at all: refused as well
    with pytest.raises(WrongDisk, match="is missing"):
        location.backend().check_online()
    os.rename(marker + ".ours", marker)
    world.restore(key)
    assert all(os.path.isfile(r.path) for r in rows)


def test_a_location_made_before_markers_gets_one_at_its_first_check(world):
    location = world.location("hdd")
    marker = os.path.join(location.mount, str(location.pk), LOCATION_MARKER)
    os.unlink(marker)
    Location.objects.filter(pk=location.pk).update(marker="")
    location = Location.objects.get(pk=location.pk)
    location.backend().check_online()
    recorded = Location.objects.get(pk=location.pk).marker
    assert recorded and open(marker).read().strip() == recorded
    with open(marker, "w") as f:  # from now on, it is checked
        f.write("another\n")
    with pytest.raises(WrongDisk):
        Location.objects.get(pk=location.pk).backend().check_online()

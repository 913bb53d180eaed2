"""What every location type shares: configuration checks, <mount>/<id>/{read,write},
the online check, safe copy paths, and finding bags on the disk."""
import os
from datetime import datetime

import pytest

from omero_storagemanager.backends import (
    BACKENDS, AutomatedBackend, BadLocation, BadPath, HddBackend, LocationConfig,
    LocationError, LocationOffline, Order, SymlinkBackend, TapeBackend, backend_for,
    bag_relpath, order_description, validate_mount)
from omero_storagemanager.backends import base
from omero_storagemanager.backends.base import walk_bags

from .conftest import FILES, RELPATH, write_bag


def config(mount, type_="hdd", **extra):
    values = dict(id=3, name="Disk 3", type=type_, mount=str(mount), max_bytes=10**9)
    values.update(extra)
    return LocationConfig(**values)


# -- mount points ----------------------------------------------------------------------

def test_validate_mount_returns_the_normalised_path(tmp_path):
    (tmp_path / "disk").mkdir()
    assert validate_mount(f"{tmp_path}//disk/") == str(tmp_path / "disk")


@pytest.mark.parametrize("mount, message", [
    ("relative/disk", "is a relative path"),
    ("", "must be an absolute path"),
    ("/mnt/usb/../../etc", "contains '..'"),
    ("/mnt/usb/..", "contains '..'"),
    ("/mnt/us\nb", "control characters"),
    ("/", "is the root directory"),
])
def test_validate_mount_refuses_bad_paths(mount, message):
    with pytest.raises(BadLocation, match=message):
        validate_mount(mount)


def test_validate_mount_refuses_a_symlink_to_the_root(tmp_path):
    os.symlink("/", tmp_path / "root-link")
    with pytest.raises(BadLocation, match="root directory through a symbolic link"):
        validate_mount(str(tmp_path / "root-link"))
    os.symlink(tmp_path / "root-link", tmp_path / "link-to-link")
    with pytest.raises(BadLocation, match="root directory"):
        validate_mount(str(tmp_path / "link-to-link"))


def test_validate_mount_refuses_what_does_not_exist_or_is_no_directory(tmp_path):
    with pytest.raises(BadLocation, match="does not exist"):
        validate_mount(str(tmp_path / "nowhere"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadLocation, match="is not a directory"):
        validate_mount(str(tmp_path / "file"))
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(BadLocation, match="is not a directory"):
        validate_mount(str(tmp_path / "dangling"))


def test_bad_location_is_a_value_error_and_a_location_error():
    assert issubclass(BadLocation, ValueError) and issubclass(BadLocation, LocationError)


def test_initialize_refuses_a_bad_mount_and_creates_nothing(tmp_path, monkeypatch):
    def must_not_create(path):
        raise AssertionError(f"created {path} for a refused mount point")

    # Guard first: were the refusal to regress, the link to / would create /<id>.
    monkeypatch.setattr(base, "makedirs_durable", must_not_create)
    backend = HddBackend(config(tmp_path / "nowhere"))
    with pytest.raises(BadLocation, match="does not exist"):
        backend.initialize()
    assert not (tmp_path / "nowhere").exists()
    os.symlink("/", tmp_path / "root-link")
    backend = HddBackend(config(tmp_path / "root-link", id=987654))
    with pytest.raises(BadLocation, match="root directory"):
        backend.initialize()


@pytest.mark.parametrize("change, message", [
    (dict(mount="disk"), "relative path"),
    (dict(mount="/mnt/../x"), "'..'"),
    (dict(id=0), "positive integer"),
    (dict(id=True), "positive integer"),
    (dict(name=" "), "needs a name"),
    (dict(max_bytes=-1), "maximum size"),
    (dict(purge_watermark=101), "purge watermark"),
    (dict(type="hdd "), "unknown location type"),
])
def test_bad_configuration_is_refused_with_the_reason(tmp_path, change, message):
    values = dict(mount=tmp_path)
    values.update(change)
    with pytest.raises(BadLocation, match=message):
        backend_for(config(**values))


def test_backend_for_picks_the_type_and_refuses_an_unknown_one(tmp_path):
    assert type(backend_for(config(tmp_path, "hdd"))) is HddBackend
    assert type(backend_for(config(tmp_path, "tape"))) is TapeBackend
    assert type(backend_for(config(tmp_path, "symlink"))) is SymlinkBackend
    assert type(backend_for(config(tmp_path, "automated", xml_folder=str(tmp_path)))) \
        is AutomatedBackend
    assert sorted(BACKENDS) == ["automated", "hdd", "s3", "symlink", "tape"]
    with pytest.raises(BadLocation, match="unknown location type 'floppy'.*'Disk 3'"):
        backend_for(config(tmp_path, "floppy"))
    with pytest.raises(BadLocation, match="not 'hdd'"):
        HddBackend(config(tmp_path, "tape"))


def test_read_cache_flags():
    assert (HddBackend.has_read_cache, SymlinkBackend.has_read_cache) == (False, False)
    assert (TapeBackend.has_read_cache, AutomatedBackend.has_read_cache) == (True, True)


# -- <mount>/<id>/ and the online check -------------------------------------------------

def test_initialize_creates_read_and_write_and_is_idempotent(tmp_path):
    (tmp_path / "usb").mkdir()
    backend = HddBackend(config(tmp_path / "usb"))
    assert backend.root == tmp_path / "usb/3"
    assert backend.write_root == tmp_path / "usb/3/write"
    assert backend.read_root == tmp_path / "usb/3/read"
    assert not backend.is_online()
    backend.initialize()
    assert sorted(os.listdir(tmp_path / "usb/3")) == ["read", "write"]
    assert backend.is_online()
    write_bag(backend.bag_dir(RELPATH))
    backend.initialize()  # again: nothing lost
    assert backend.restore_source(RELPATH) is not None


def test_initialize_refuses_an_id_path_that_is_a_file(tmp_path):
    (tmp_path / "usb").mkdir()
    (tmp_path / "usb/3").write_text("not a directory")
    with pytest.raises(BadLocation, match="is not a directory"):
        HddBackend(config(tmp_path / "usb")).initialize()


def test_an_empty_mount_point_is_offline_and_nothing_is_written_there(tmp_path):
    # Disk 3 was set up, then unplugged: its mount point is an empty directory again.
    (tmp_path / "usb").mkdir()
    backend = HddBackend(config(tmp_path / "usb"))
    assert not backend.is_online()
    with pytest.raises(LocationOffline) as caught:
        backend.check_online()
    assert str(caught.value) == \
        f"archive disk 'Disk 3' (id 3) is not connected: {tmp_path}/usb/3 is missing"
    with pytest.raises(LocationOffline):
        backend.bag_dir(RELPATH)
    with pytest.raises(LocationOffline):
        backend.publish(RELPATH, Order.from_relpath(RELPATH))
    with pytest.raises(LocationOffline):
        list(backend.find_bags())
    with pytest.raises(LocationOffline):
        backend.disk_usage()
    assert backend.restore_source(RELPATH) is None
    assert os.listdir(tmp_path / "usb") == []


def test_a_missing_write_or_read_directory_is_offline_too(tmp_path, make_location):
    backend = make_location("tape", name="Tape cache")
    os.rmdir(backend.read_root)
    with pytest.raises(LocationOffline,
                       match=r"tape cache 'Tape cache' \(id 3\) is not mounted: .*/3/read"):
        backend.check_online()


@pytest.mark.parametrize("relpath", ["../x", "/etc", "project/../../x", "a/./b", "a//b", "",
                                     "project/2/2/101/16-11-2009_154634.partial",
                                     "project/2/2/101/16-11-2009_154634.evicting"])
def test_bag_dir_refuses_paths_leaving_the_location(make_location, relpath):
    backend = make_location("hdd")
    with pytest.raises(BadPath):
        backend.bag_dir(relpath)


def test_bag_dir_is_below_write(make_location):
    backend = make_location("hdd")
    assert backend.bag_dir(RELPATH) == backend.write_root / RELPATH


def test_an_order_for_another_copy_is_refused(make_location):
    backend = make_location("hdd")
    write_bag(backend.bag_dir(RELPATH))
    other = Order("project", 2, 2, 102, "16-11-2009_154634")
    with pytest.raises(BadPath, match="not for copy"):
        backend.publish(RELPATH, other)


def test_disk_usage_counts_every_file_below_the_id_directory(make_location):
    backend = make_location("hdd")
    bag = write_bag(backend.bag_dir(RELPATH))
    expected = sum(os.path.getsize(os.path.join(top, n))
                   for top, _, names in os.walk(bag) for n in names)
    assert backend.disk_usage() == expected


# -- finding bags ----------------------------------------------------------------------

def test_find_bags_reads_every_complete_bag_in_write_and_read(make_location):
    backend = make_location("tape")
    write_bag(backend.bag_dir(RELPATH))
    write_bag(backend.read_root / RELPATH)
    other = "screen/5/7/9/01-02-2020_030405"
    write_bag(backend.bag_dir(other), {"Pixels/Dir-000/9": b"9"})
    # Work in progress and leftovers are not copies.
    write_bag(backend.write_root / "screen/5/7/9/02-02-2020_030405")
    os.rename(backend.write_root / "screen/5/7/9/02-02-2020_030405",
              backend.write_root / "screen/5/7/9/02-02-2020_030405.partial")
    (backend.write_root / "project/2/2/101/junk").mkdir()
    found = list(backend.find_bags())
    assert [(f.area, f.relpath) for f in found] == [
        ("write", RELPATH), ("write", other), ("read", RELPATH)]
    assert found[0].error == ""
    assert found[0].contents.first("OMERO-Collection-Id") == "101"
    assert found[0].contents.manifest.keys() == FILES.keys()
    assert found[1].contents.manifest.keys() == {"Pixels/Dir-000/9"}


def test_find_bags_never_descends_into_a_bag(make_location):
    backend = make_location("hdd")
    inner = {"ManagedRepository/u/x/bagit.txt": b"BagIt-Version: 1.0\n",
             "ManagedRepository/u/x/manifest-md5.txt": b""}
    write_bag(backend.bag_dir(RELPATH), inner)
    assert [f.relpath for f in backend.find_bags()] == [RELPATH]


def test_find_bags_reports_a_bag_it_cannot_read(make_location):
    backend = make_location("hdd")
    bag = write_bag(backend.bag_dir(RELPATH))
    (bag / "bagit.txt").write_text("nonsense\n")
    (found,) = backend.find_bags()
    assert found.relpath == RELPATH and "not a 'Label: value' line" in found.error
    assert found.contents.info == {} and found.contents.manifest == {}


def test_walk_bags_on_a_missing_directory_finds_nothing(tmp_path):
    assert list(walk_bags(tmp_path / "gone")) == []


# -- naming ----------------------------------------------------------------------------

def test_paths_and_order_descriptions_as_in_the_manual():
    when = datetime(2009, 11, 16, 15, 46, 34)
    assert bag_relpath("project", 2, 2, 101, when) == "project/2/2/101/16-11-2009_154634"
    assert order_description("project", 2, 2, 101, when) == "project$2$2$101$16-11-2009_154634"
    assert bag_relpath("screen", 3, 0, 7, "01-02-2020_030405") == "screen/3/0/7/01-02-2020_030405"
    order = Order.from_relpath("project/2/2/101/16-11-2009_154634")
    assert order == Order(kind="project", group_id=2, user_id=2, collection_id=101,
                          datetime="16-11-2009_154634")
    assert order.description == "project$2$2$101$16-11-2009_154634"
    assert order.relpath == "project/2/2/101/16-11-2009_154634"


@pytest.mark.parametrize("args", [
    ("dataset", 2, 2, 101, "16-11-2009_154634"),
    ("project", -1, 2, 101, "16-11-2009_154634"),
    ("project", 2, "2", 101, "16-11-2009_154634"),
    ("project", 2, 2, 101, "2009-11-16 15:46:34"),
    ("project", 2, 2, 101, "16-11-2009_154634/../x"),
])
def test_bad_names_are_refused(args):
    with pytest.raises(ValueError):
        bag_relpath(*args)
    with pytest.raises(ValueError):
        Order(*args)


def test_order_from_a_path_that_is_not_a_copy_path():
    for relpath in ("project/2/2/101", "project/a/2/101/16-11-2009_154634", "x/1/1/1/y"):
        with pytest.raises(ValueError):
            Order.from_relpath(relpath)

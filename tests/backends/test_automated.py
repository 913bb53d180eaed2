"""Automated locations: read cache as for tape, plus the XML orders of manual 7.3 for
the third-party archiver, written atomically and once."""
import os
import shutil
import stat
import xml.etree.ElementTree as ET

import pytest

from omero_storagemanager.backends import (AutomatedBackend, BadLocation, CorruptCopy,
                                           LocationConfig, Order)
from omero_storagemanager.backends import xmlorders
from omero_storagemanager.backends.bag import validate_bag

from .conftest import RELPATH, flip_a_bit, write_bag

# Manual section 7.3, verbatim (its lines end with a space, left out here).
MANUAL_ARCHIVE = """<archive>
<OrderDescription>project$2$2$101$16-11-2009_154634</OrderDescription>
<SourceFolder>/data/archive1/1/write/project/2/2/101/16-11-2009_154634</SourceFolder>
<RemoveSource>true</RemoveSource>
<RemoveFolder>true</RemoveFolder>
<RemoveXmlAfterFinish>true</RemoveXmlAfterFinish>
<RemoveXmlAfterFailure>false</RemoveXmlAfterFailure>
</archive>
"""
MANUAL_RESTORE = """<restore>
<OrderDescription> project$2$2$101$16-11-2009_154634</OrderDescription>
<DestinationFolder>/data/archive1/1/read/project/2/2/101/16-11-2009_154634</DestinationFolder>
<RemoveXmlAfterFinish>false</RemoveXmlAfterFinish>
<RemoveXmlAfterFailure>false</RemoveXmlAfterFailure>
</restore>
"""
ORDER = Order.from_relpath(RELPATH)


def elements(xml_text):
    root = ET.fromstring(xml_text)
    return root.tag, [(child.tag, child.text) for child in root]


def test_archive_order_is_exactly_the_manuals():
    order = Order("project", 2, 2, 101, "16-11-2009_154634",
                  source_folder="/data/archive1/1/write/project/2/2/101/16-11-2009_154634")
    text = xmlorders.archive_order_xml(order)
    assert text == MANUAL_ARCHIVE
    assert elements(text) == elements(MANUAL_ARCHIVE)


def test_restore_order_is_the_manuals():
    order = Order("project", 2, 2, 101, "16-11-2009_154634",
                  destination_folder="/data/archive1/1/read/project/2/2/101/16-11-2009_154634")
    text = xmlorders.restore_order_xml(order)
    # The manual's restore example has a space before "project$...", which its archive
    # example has not and which no archiver splitting on '$' expects: a typo, left out.
    manual = MANUAL_RESTORE.replace("<OrderDescription> ", "<OrderDescription>")
    assert text == manual
    tag, children = elements(text)
    manual_tag, manual_children = elements(MANUAL_RESTORE)
    assert tag == manual_tag == "restore"
    assert [(t, v.strip()) for t, v in children] == [(t, v.strip()) for t, v in manual_children]


def test_the_backend_fills_in_its_own_folders(tmp_path):
    mount = tmp_path / "data/archive1"
    mount.mkdir(parents=True)
    (tmp_path / "xml").mkdir()
    backend = AutomatedBackend(LocationConfig(
        id=1, name="Archive 1", type="automated", mount=str(mount), max_bytes=10**12,
        xml_folder=str(tmp_path / "xml")))
    backend.initialize()
    write_bag(backend.bag_dir(RELPATH))
    backend.publish(RELPATH, ORDER)
    (path,) = (tmp_path / "xml").iterdir()
    assert path.name == "archive-1-project-2-2-101-16-11-2009_154634.xml"
    assert path.read_text(encoding="utf-8") == MANUAL_ARCHIVE.replace("/data/archive1",
                                                                      str(mount))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the archiver may be another user
    backend.evict(RELPATH)
    backend.request_restore(RELPATH, ORDER)
    restore = tmp_path / "xml/restore-1-project-2-2-101-16-11-2009_154634.xml"
    assert restore.read_text(encoding="utf-8") == MANUAL_RESTORE.replace(
        "/data/archive1", str(mount)).replace("<OrderDescription> ", "<OrderDescription>")


def test_special_characters_round_trip_through_an_xml_parser(tmp_path, make_location):
    mount = tmp_path / "archive <&> 'quoted' \"double\" Zürich 細胞"
    backend = make_location("automated", id=1, mount=mount)
    write_bag(backend.bag_dir(RELPATH))
    backend.publish(RELPATH, ORDER)
    path = tmp_path / "xml/archive-1-project-2-2-101-16-11-2009_154634.xml"
    raw = path.read_bytes()
    assert b"&lt;&amp;&gt; &apos;quoted&apos; &quot;double&quot;" in raw
    assert "Zürich 細胞".encode("utf-8") in raw
    root = ET.fromstring(raw)
    assert root.find("SourceFolder").text == f"{mount}/1/write/{RELPATH}"
    assert ET.parse(path).getroot().find("OrderDescription").text == ORDER.description


@pytest.mark.parametrize("bad", ["a\x01b", "tab\there", "line\nfeed", "\ud800"])
def test_text_an_xml_order_cannot_carry_is_refused(bad):
    order = Order("project", 2, 2, 101, "16-11-2009_154634", source_folder=bad,
                  destination_folder=bad)
    with pytest.raises(ValueError, match="cannot carry"):
        xmlorders.archive_order_xml(order)
    with pytest.raises(ValueError, match="cannot carry"):
        xmlorders.restore_order_xml(order)


def test_orders_are_written_atomically(tmp_path, monkeypatch):
    folder = tmp_path / "xml"
    folder.mkdir()
    xmlorders.write_order(folder, "archive-1-x.xml", MANUAL_ARCHIVE)
    assert os.listdir(folder) == ["archive-1-x.xml"]  # no temporary file left
    ET.parse(folder / "archive-1-x.xml")

    def killed(*args):
        raise OSError("killed before the rename")

    monkeypatch.setattr(os, "rename", killed)
    with pytest.raises(OSError):
        xmlorders.write_order(folder, "archive-1-y.xml", MANUAL_ARCHIVE)
    assert os.listdir(folder) == ["archive-1-x.xml"]  # nothing half written, no temp


def test_publish_copies_verified_and_orders_the_archive_once(tmp_path, make_location):
    backend = make_location("automated", name="Archive")
    write_bag(backend.bag_dir(RELPATH))
    backend.publish(RELPATH, ORDER)
    assert validate_bag(backend.read_root / RELPATH) == []
    order = tmp_path / "xml/archive-3-project-2-2-101-16-11-2009_154634.xml"
    first = order.stat().st_mtime_ns
    backend.publish(RELPATH, ORDER)
    assert order.stat().st_mtime_ns == first and len(os.listdir(tmp_path / "xml")) == 1
    # The archiver did its work: moved write/<copy> away and removed the order.
    shutil.rmtree(backend.write_root / RELPATH)
    order.unlink()
    backend.publish(RELPATH, ORDER)  # a re-run must not order it again
    assert os.listdir(tmp_path / "xml") == []


def test_publish_refuses_a_damaged_write_copy_and_orders_nothing(tmp_path, make_location):
    backend = make_location("automated", name="Archive")
    bag = write_bag(backend.bag_dir(RELPATH))
    flip_a_bit(bag / "data/ManagedRepository/alice_2/2019-03/07/14-02-31.553/a.tif")
    with pytest.raises(CorruptCopy, match="write/ is damaged"):
        backend.publish(RELPATH, ORDER)
    assert os.listdir(tmp_path / "xml") == []
    assert not (backend.read_root / RELPATH).exists()


def test_restore_order_once_then_dropped_when_the_copy_is_back(tmp_path, make_location):
    backend = make_location("automated", name="Archive")
    write_bag(backend.bag_dir(RELPATH))
    backend.publish(RELPATH, ORDER)
    archived = tmp_path / "archiver"
    shutil.move(backend.write_root / RELPATH, archived)  # the archiver takes it
    backend.evict(RELPATH)
    assert backend.restore_source(RELPATH) is None
    restore = tmp_path / "xml/restore-3-project-2-2-101-16-11-2009_154634.xml"

    message = backend.request_restore(RELPATH, ORDER)
    assert message.startswith(f"wrote restore order {restore}")
    text = restore.read_text(encoding="utf-8")
    assert ET.fromstring(text).find("DestinationFolder").text == \
        str(backend.read_root / RELPATH)
    before = restore.stat().st_mtime_ns
    again = backend.request_restore(RELPATH, ORDER)
    assert again.startswith(f"restore order {restore} was written")
    assert restore.stat().st_mtime_ns == before and restore.read_text() == text

    shutil.copytree(archived, backend.read_root / RELPATH)  # the archiver restores it
    assert backend.restore_source(RELPATH) == backend.read_root / RELPATH
    assert not restore.exists()  # fulfilled: a later restore gets a new order
    backend.evict(RELPATH)
    assert backend.request_restore(RELPATH, ORDER).startswith("wrote restore order")
    assert restore.exists()


def test_evict_drops_a_fulfilled_restore_order(tmp_path, make_location):
    backend = make_location("automated", name="Archive")
    write_bag(backend.bag_dir(RELPATH))
    backend.publish(RELPATH, ORDER)
    restore = tmp_path / "xml/restore-3-project-2-2-101-16-11-2009_154634.xml"
    restore.write_text("left by a restore the archiver finished")
    backend.evict(RELPATH)
    assert not restore.exists()


def test_no_restore_order_while_the_cache_is_not_mounted(tmp_path, make_location):
    backend = make_location("automated", name="Archive")
    os.rename(backend.root, tmp_path / "away")
    message = backend.request_restore(RELPATH, ORDER)
    assert message == f"mount archive cache 'Archive' (id 3): {backend.root} is missing"
    assert os.listdir(tmp_path / "xml") == []


def test_the_xml_folder_is_required_and_checked(tmp_path, make_location):
    with pytest.raises(BadLocation, match="needs an XML folder"):
        make_location("automated", xml_folder="")
    with pytest.raises(BadLocation, match="XML folder 'xml' is a relative path"):
        make_location("automated", xml_folder="xml")
    with pytest.raises(BadLocation, match="XML folder .* does not exist"):
        make_location("automated", xml_folder=str(tmp_path / "missing"))
    backend = make_location("automated", name="Archive")
    write_bag(backend.bag_dir(RELPATH))
    os.rmdir(tmp_path / "xml")  # the share went away
    with pytest.raises(BadLocation, match="XML folder .* does not exist"):
        backend.publish(RELPATH, ORDER)
    assert not (backend.read_root / RELPATH).exists()  # refused before copying
    (tmp_path / "xml").mkdir()
    backend.publish(RELPATH, ORDER)
    assert os.listdir(tmp_path / "xml") == ["archive-3-project-2-2-101-16-11-2009_154634.xml"]

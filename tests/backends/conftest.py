"""Helpers for the backend tests: real bags and locations under pytest's tmp_path."""
import hashlib
from pathlib import Path

import pytest

from omero_storagemanager.backends import LocationConfig, backend_for
from omero_storagemanager.backends.bag import BagWriter

INFO = {
    "External-Identifier": "Project:101",
    "External-Description": "Mitosis screen",
    "OMERO-Collection-Kind": "project",
    "OMERO-Collection-Id": "101",
    "OMERO-Collection-Name": "Mitosis screen",
    "OMERO-Owner": "alice (id 2)",
    "OMERO-Group": "lab (id 2)",
    "OMERO-Image-Ids": "1 2",
    "Source-Organization": "OMERO (omero-storagemanager)",
}

FILES = {
    "ManagedRepository/alice_2/2019-03/07/14-02-31.553/a.tif": b"first image " * 100,
    "ManagedRepository/alice_2/2019-03/07/14-02-31.553/b.tif": b"second image",
    "Pixels/Dir-001/1000": bytes(range(256)) * 8,
}

RELPATH = "project/2/2/101/16-11-2009_154634"


def write_bag(final_dir, files=None, info=None) -> Path:
    """A bag made the way the engine makes one: write each file, record it, finish."""
    writer = BagWriter(final_dir)
    for rel, data in (FILES if files is None else files).items():
        writer.payload_path(rel).write_bytes(data)
        writer.record(rel, hashlib.sha1(data).hexdigest(), len(data))
    return writer.finish(dict(INFO if info is None else info))


def flip_a_bit(path: Path) -> None:
    """Same size, other content: only a hash can tell."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def make_location(tmp_path):
    """make_location(type, id=3, name=..., **config) -> an initialized backend."""

    def make(type_, id=3, name="Disk 3", mount=None, initialize=True, **extra):
        mount = Path(mount) if mount else tmp_path / "mnt"
        mount.mkdir(parents=True, exist_ok=True)
        if type_ == "automated" and "xml_folder" not in extra:
            xml = tmp_path / "xml"
            xml.mkdir(exist_ok=True)
            extra["xml_folder"] = str(xml)
        backend = backend_for(LocationConfig(id=id, name=name, type=type_, mount=str(mount),
                                             max_bytes=10**9, **extra))
        if initialize:
            backend.initialize()
        return backend

    return make

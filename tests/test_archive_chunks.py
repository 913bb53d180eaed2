"""Archive in slices (issue 4, memory flat in the collection's size): with a slice much
smaller than the collection, the archive gives the same verified copy as in one slice,
a stopped archive resumes in slices, and the streamed inventory lists what read() lists.
"""
import os

import bagit
import pytest

from omero_storagemanager.backends import bagwriter
from omero_storagemanager.backends.bag import read_bag
from omero_storagemanager.catalog.collections import parse_key
from omero_storagemanager.catalog.inventory import InventoryReader
from omero_storagemanager.engine import archive as archive_module
from omero_storagemanager.engine import archiveplan
from omero_storagemanager.engine import batchcopy
from omero_storagemanager.engine.archive import ArchiveError
from omero_storagemanager.engine.disk import add_pyramids, pyramid_records
from omero_storagemanager.models import Copy, CopyFile
from tests.test_archive_faults import (assert_payload_trustworthy, assert_whole_copy,
                                       many_files, world)  # noqa: F401 (fixture)

SMALL = 7  # files per slice: the big plate's Screen is dozens of slices


def bag_of(location, copy):
    bag = location.backend().write_root / copy.bag_path
    return read_bag(bag).manifest, bag


def test_the_streamed_inventory_lists_what_read_lists(world):
    reader = InventoryReader(world.conn, world.paths)
    for key in world.truth.collections:
        kind, cid = parse_key(key)
        whole = reader.read(kind, cid)
        add_pyramids(whole, world.paths)
        streamed = [r for records in reader.iter_files(kind, cid, chunk=SMALL) for r in records]
        streamed += [r for pids in reader.iter_pixels_ids(kind, cid, chunk=SMALL)
                     for r in pyramid_records(pids, world.paths)]

        def facts(records):
            return sorted((r.path, r.kind, r.size, r.hash, r.hasher, r.originalfile_id)
                          for r in records)

        assert facts(streamed) == facts(whole.files), key
        assert reader.image_ids(kind, cid) == whole.image_ids


def test_an_archive_in_small_slices_gives_the_same_verified_copy(world, monkeypatch):
    key = world.key_where(many_files)
    whole = world.location("hdd", name="whole")
    world.archive(key, whole)
    reference = Copy.objects.get(location=whole, state=Copy.VERIFIED)
    monkeypatch.setattr(archiveplan, "CHUNK", SMALL)
    monkeypatch.setattr(bagwriter, "SORT_RUN", 5)  # the manifest merged from many runs
    sliced = world.location("hdd", name="sliced")
    result = world.archive(key, sliced)
    assert result.state == "archived"
    copy = assert_whole_copy(world, key, sliced)
    manifest, bag = bag_of(sliced, copy)
    assert manifest == bag_of(whole, reference)[0]
    text = (bag / "manifest-sha1.txt").read_text()
    assert text == (whole.backend().write_root / reference.bag_path
                    / "manifest-sha1.txt").read_text()  # same lines, same order
    # What RFC 8493 names, and the files' records a rebuild reads (engine/filetags.py)
    assert sorted(os.listdir(bag)) == ["bag-info.txt", "bagit.txt", "data",
                                       "manifest-sha1.txt", "storagemanager-files.txt",
                                       "tagmanifest-sha1.txt"]
    rows = set(CopyFile.objects.filter(copy=copy).values_list("relpath", "checksum", "size"))
    assert rows == set(CopyFile.objects.filter(copy=reference).values_list(
        "relpath", "checksum", "size"))
    # Unchanged since: nothing to copy, in slices too.
    assert world.archive(key, sliced).state == "unchanged"


def test_a_stopped_archive_resumes_in_slices(world, monkeypatch):
    key = world.key_where(many_files)
    total = len(world.truth.collections[key]["files"])
    monkeypatch.setattr(archiveplan, "CHUNK", SMALL)
    monkeypatch.setattr(archive_module, "BATCH", 5)  # rows recorded every 5 files
    monkeypatch.setattr(batchcopy, "BATCH_FILES", 8)  # sealed (and reported) 8 at a time
    monkeypatch.setattr(bagwriter, "SORT_RUN", 5)
    location = world.location("hdd")
    real_job, sent = archive_module._job, [0]

    def failing_job(item, writer, made):
        # The copies run in worker processes: the fault is a source that is not there
        # from half way on (the worker's copy of it fails, as a vanished file would).
        job = real_job(item, writer, made)
        sent[0] += 1
        if sent[0] > total // 2:
            return job._replace(sources=(job.sources[0] + ".injected-missing",))
        return job

    monkeypatch.setattr(archive_module, "_job", failing_job)
    with pytest.raises(ArchiveError, match=r"copying .* to .* failed: No such file or "
                                           r"directory \(.*injected-missing\); the "
                                           r"primary files are untouched"):
        world.archive(key, location)
    copy = Copy.objects.get(location=location, state=Copy.WRITING)
    recorded = copy.entries.count()
    assert 0 < recorded < total
    assert_payload_trustworthy(world, location)
    partial = location.backend().write_root / (copy.bag_path + ".partial")
    # What a kill leaves besides: a payload file written but never recorded, a row whose
    # file is gone, and the records and sort runs of a finish killed half way.
    (partial / "data" / "never-recorded").write_bytes(b"unverified")
    lost = copy.entries.order_by("pk").last()
    os.unlink(partial / "data" / lost.relpath)
    (partial / ".records-run0.tmp").write_text("half a sort run")
    monkeypatch.setattr(archive_module, "_job", real_job)
    assert world.archive(key, location).state == "archived"
    assert Copy.objects.filter(location=location).count() == 1  # resumed, not begun again
    resumed = assert_whole_copy(world, key, location)
    bag = location.backend().write_root / resumed.bag_path
    bagit.Bag(str(bag)).validate()
    assert not [n for n in os.listdir(bag) if n.startswith(".")]

"""engine/batchcopy.py and the two halves of a verified copy (engine/copyfile.py), on
real files: small files share a flush, nothing gets its final name unverified, and a
run stopped by an error leaves no temporary file behind."""
import hashlib
import os

import pytest

from omero_storagemanager.engine import batchcopy, copyfile
from omero_storagemanager.engine.batchcopy import copy_batched
from omero_storagemanager.engine.copyfile import (TMP_SUFFIX, CopyCorrupt, prefetch,
                                                  seal_copy, write_copy)


def make_sources(root, sizes):
    root.mkdir()
    items = []
    for i, size in enumerate(sizes):
        path = root / f"f {i:04d}\tü.bin"  # odd names: a tab, non-ASCII
        path.write_bytes(os.urandom(size))
        items.append((str(path), hashlib.sha1(path.read_bytes()).hexdigest(), size))
    return items


def run(items, dest, workers=3, seal=None):
    dest.mkdir(exist_ok=True)

    def write(item, durable):
        path, digest, _ = item
        return write_copy(path, str(dest / os.path.basename(path)), digest, "SHA1-160",
                          durable=durable)

    return list(copy_batched(items, write, seal or (lambda item, p: seal_copy(p)),
                             lambda item: item[2], workers,
                             prefetch=lambda item: prefetch(item[0])))


def leftovers(dest):
    return [n for n in os.listdir(dest) if n.endswith(TMP_SUFFIX)]


def test_small_files_share_flushes_and_all_arrive_verified(tmp_path, monkeypatch):
    sizes = [1 + (i * 7919) % 30000 for i in range(700)] + [batchcopy.LARGE_FILE + 5]
    items = make_sources(tmp_path / "src", sizes)
    flushed = []
    real = copyfile.make_durable

    def counting(pendings):
        flushed.append(sum(not p.durable for p in pendings))
        return real(pendings)

    monkeypatch.setattr(batchcopy, "make_durable", counting)
    results = run(items, tmp_path / "dst")
    assert sorted(r.sha1 for _, r in results) == sorted(d for _, d, _ in items)
    for path, digest, size in items:
        copied = tmp_path / "dst" / os.path.basename(path)
        assert hashlib.sha1(copied.read_bytes()).hexdigest() == digest
    assert leftovers(tmp_path / "dst") == []
    # 700 small files in flushes of at most BATCH_FILES; the large one fsynced alone.
    assert sum(flushed) == 700, flushed
    assert max(flushed) <= batchcopy.BATCH_FILES and len(flushed) < 700 / 10, flushed


def test_without_syncfs_each_file_is_fsynced_instead(tmp_path, monkeypatch):
    monkeypatch.setattr(copyfile, "_libc", None)
    items = make_sources(tmp_path / "src", [100] * 40)
    results = run(items, tmp_path / "dst")
    assert len(results) == 40 and leftovers(tmp_path / "dst") == []


def test_a_copy_that_reads_back_wrong_never_gets_its_name(tmp_path):
    items = make_sources(tmp_path / "src", [5000] * 30)
    victim = items[17]

    def seal(item, pending):
        if item is victim:  # the disk returns other bytes than were written
            with open(pending.tmp, "r+b") as f:
                f.write(b"X")
        return seal_copy(pending)

    with pytest.raises(CopyCorrupt, match="read back"):
        run(items, tmp_path / "dst", seal=seal)
    dest = tmp_path / "dst"
    assert not (dest / os.path.basename(victim[0])).exists()
    assert leftovers(dest) == []
    for name in os.listdir(dest):  # whatever got its name is a whole, verified copy
        source = next(i for i in items if os.path.basename(i[0]) == name)
        assert hashlib.sha1((dest / name).read_bytes()).hexdigest() == source[1]


def test_an_error_mid_run_stops_it_and_leaves_no_temporary_file(tmp_path):
    items = make_sources(tmp_path / "src", [3000] * 600)
    os.unlink(items[450][0])  # a source vanishes
    with pytest.raises(FileNotFoundError):
        run(items, tmp_path / "dst", workers=4)
    assert leftovers(tmp_path / "dst") == []


def test_a_damaged_source_is_refused_on_the_write(tmp_path):
    (path, digest, size), = make_sources(tmp_path / "src", [4096])
    with pytest.raises(copyfile.PrimaryDamaged):
        write_copy(path, str(tmp_path / "copy"), "0" * 40, "SHA1-160", durable=False)
    assert not os.path.lexists(tmp_path / ("copy" + TMP_SUFFIX))

"""The file system primitives: durable directories, atomic writes, hashing copies."""
import hashlib
import os

import pytest

from omero_storagemanager.backends.fsutil import (atomic_write_bytes, copy_file_hashing,
                                                  hash_file, makedirs_durable, remove_tree,
                                                  tree_bytes)


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "order.xml"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert os.listdir(tmp_path) == ["order.xml"]


def test_copy_file_hashing_keeps_mode_and_times_and_refuses_to_overwrite(tmp_path):
    source = tmp_path / "a"
    source.write_bytes(b"x" * 3_000_000)
    os.chmod(source, 0o640)
    os.utime(source, ns=(1_000_000_000, 2_000_000_000))
    digest = copy_file_hashing(source, tmp_path / "b")
    assert digest == hashlib.sha1(b"x" * 3_000_000).hexdigest() == hash_file(tmp_path / "b")
    assert hash_file(tmp_path / "b", "md5", drop_cache=True) == \
        hashlib.md5(b"x" * 3_000_000).hexdigest()
    st = (tmp_path / "b").stat()
    assert (oct(st.st_mode & 0o777), st.st_mtime_ns) == ("0o640", 2_000_000_000)
    with pytest.raises(FileExistsError):
        copy_file_hashing(source, tmp_path / "b")


def test_makedirs_tree_bytes_and_remove_tree(tmp_path):
    makedirs_durable(tmp_path / "a/b/c")
    makedirs_durable(tmp_path / "a/b/c")  # again: fine
    (tmp_path / "a/b/c/f").write_bytes(b"12345")
    (tmp_path / "a/g").write_bytes(b"12")
    os.symlink("/etc/passwd", tmp_path / "a/link")  # not followed, not counted
    assert tree_bytes(tmp_path / "a") == 7
    assert tree_bytes(tmp_path / "missing") == 0
    os.symlink(tmp_path / "a", tmp_path / "dirlink")
    remove_tree(tmp_path / "dirlink")  # removes the link, never what it points to
    assert (tmp_path / "a/b/c/f").exists()
    remove_tree(tmp_path / "a")
    assert os.listdir(tmp_path) == []

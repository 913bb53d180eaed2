"""engine/beneath.py: directories opened beneath a root never follow a symbolic link
(openat2 where the kernel has it, O_NOFOLLOW component by component elsewhere: both
are run), and the copy worker's rooted jobs (restore) that write and read through it.
"""
import hashlib
import os

import pytest

from omero_storagemanager.engine import beneath
from omero_storagemanager.engine.beneath import OutsideRoot
from omero_storagemanager.engine.copyfile import TMP_SUFFIX
from omero_storagemanager.engine.copyworker import Batch, Done, Failed, Job, run_batch

PARTS = ["a", "b", "c"]


@pytest.fixture(params=["openat2", "fallback"])
def how(request, monkeypatch):
    if request.param == "openat2":
        if not beneath.HAVE_OPENAT2:
            pytest.skip("this kernel has no openat2")
    else:
        monkeypatch.setattr(beneath, "_openat2", None)
    return request.param


@pytest.fixture
def tree(tmp_path):
    """root/a/b/c/f, and a sentinel directory outside the root, empty."""
    root = tmp_path / "root"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "f").write_bytes(b"inside")
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    return root, sentinel


def snapshot(top):
    """Every path below top with its content (files) or None (directories, links)."""
    out = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, top)] = (
                open(path, "rb").read() if os.path.isfile(path) and not os.path.islink(path)
                else os.readlink(path) if os.path.islink(path) else None)
    return out


def link_away(root, sentinel, depth):
    """Move the directory at `depth` below root into the sentinel and leave a symbolic
    link to it in its place (an admin's or a tool's doing). Returns the link's path."""
    victim = root.joinpath(*PARTS[:depth])
    moved = sentinel / f"moved-{depth}"
    os.rename(victim, moved)
    os.symlink(moved, victim)
    return victim


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_symlinked_directory_is_refused_at_every_depth_and_named(tree, how, depth):
    root, sentinel = tree
    victim = link_away(root, sentinel, depth)
    rfd = beneath.open_root(root)
    try:
        for create in (False, True):
            with pytest.raises(OutsideRoot) as info:
                beneath.open_dir(rfd, PARTS, create=create, root_name=str(root))
            assert info.value.filename == str(victim)  # the link, not just the path
            assert "symbolic link" in str(info.value)
    finally:
        os.close(rfd)
    with pytest.raises(OutsideRoot):
        beneath.open_file(root, "a/b/c/f")
    with pytest.raises(OutsideRoot):
        beneath.lstat(root, "a/b/c/f")


def test_the_root_itself_may_be_reached_through_a_link(tree, how, tmp_path):
    root, _ = tree
    os.symlink(root, tmp_path / "via-link")
    fd = beneath.open_file(tmp_path / "via-link", "a/b/c/f")
    try:
        assert os.read(fd, 100) == b"inside"
    finally:
        os.close(fd)


@pytest.mark.parametrize("relpath", ["../root/a", "a/../../x", "a/b/..", "..", "/etc/passwd",
                                     "", "a\0b"])
def test_climbing_or_absolute_paths_are_refused(tree, how, relpath):
    root, _ = tree
    with pytest.raises(OutsideRoot):
        beneath.split(relpath)
    with pytest.raises(OutsideRoot):
        beneath.open_file(root, relpath)


def test_create_makes_missing_directories_one_by_one(tree, how):
    root, _ = tree
    rfd = beneath.open_root(root)
    try:
        fd = beneath.open_dir(rfd, ["a", "new", "deeper"], create=True)
        try:
            assert os.path.samestat(os.fstat(fd), os.stat(root / "a" / "new" / "deeper"))
        finally:
            os.close(fd)
        with pytest.raises(FileNotFoundError):  # not made without create
            beneath.open_dir(rfd, ["x", "y"])
        assert not (root / "x").exists()
    finally:
        os.close(rfd)


def test_a_link_at_the_final_name_is_refused_by_open_file(tree, how, tmp_path):
    root, sentinel = tree
    (sentinel / "secret").write_bytes(b"outside")
    os.symlink(sentinel / "secret", root / "a" / "b" / "c" / "link")
    with pytest.raises(OutsideRoot, match="symbolic link"):
        beneath.open_file(root, "a/b/c/link")
    st = beneath.lstat(root, "a/b/c/link")  # lstat: the link itself
    assert os.path.islink(root / "a" / "b" / "c" / "link") and not beneath.is_regular(st)
    fd = beneath.open_file(root, "a/b/c/f")
    os.close(fd)


# -- the copy worker's rooted jobs (restore): written and read beneath their roots ----


def source_in_bag(location_root, relpath, data=b"restored bytes" * 100):
    path = location_root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha1(data).hexdigest(), len(data)


def rooted_job(root, target, loc, sources, digest, size, mtime=1_600_000_000_123_456_789):
    return Job(tuple(sources), target, digest, "SHA1-160", 0o640, (mtime,) * len(sources),
               size=size, target_root=str(root), source_roots=(str(loc),) * len(sources))


@pytest.mark.parametrize("size", [20 << 10, 5 << 20, 9 << 20])  # batched, fsynced, streamed
def test_a_rooted_job_writes_beneath_its_root_making_folders(tree, how, tmp_path, size):
    root, _ = tree
    loc = tmp_path / "loc"
    digest, size = source_in_bag(loc, "write/bag/data/new/dir/file", os.urandom(size))
    job = rooted_job(root, "new/dir/file", loc, ["write/bag/data/new/dir/file"], digest, size)
    done, = run_batch(Batch([job], fail_fast=False, list_targets=True)).outcomes
    assert isinstance(done, Done) and done.sha1 == digest and not done.problems
    target = root / "new" / "dir" / "file"
    assert target.read_bytes() == (loc / "write/bag/data/new/dir/file").read_bytes()
    st = os.lstat(target)
    assert st.st_mtime_ns == 1_600_000_000_123_456_789 and st.st_mode & 0o777 == 0o640
    assert done.target_id[:4] == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    assert os.listdir(target.parent) == ["file"]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_rooted_job_never_writes_through_a_symlinked_directory(tree, how, tmp_path, depth):
    root, sentinel = tree
    victim = link_away(root, sentinel, depth)
    before = snapshot(sentinel)
    loc = tmp_path / "loc"
    digest, size = source_in_bag(loc, "write/bag/data/f")
    ok = rooted_job(root, "ok/f", loc, ["write/bag/data/f"], digest, size)
    job = rooted_job(root, "a/b/c/new", loc, ["write/bag/data/f"], digest, size)
    outcomes = run_batch(Batch([job, ok], fail_fast=False, list_targets=True)).outcomes
    failed, done = outcomes
    assert isinstance(failed, Failed) and failed.stage == "target"
    (index, message), = failed.problems
    assert index is None and str(victim) in message and "symbolic link" in message
    assert isinstance(done, Done)  # the batch goes on with the other files
    assert snapshot(sentinel) == before  # nothing written outside the root
    assert (root / "ok" / "f").exists()


def test_an_absolute_target_is_refused_as_outside_the_root(tree, how, tmp_path):
    root, sentinel = tree
    loc = tmp_path / "loc"
    digest, size = source_in_bag(loc, "write/bag/data/f")
    job = rooted_job(root, str(sentinel / "f"), loc, ["write/bag/data/f"], digest, size)
    failed, = run_batch(Batch([job], fail_fast=False)).outcomes
    assert isinstance(failed, Failed) and failed.stage == "target"
    assert "is not below" in failed.problems[0][1] and os.listdir(sentinel) == []


def test_a_symlinked_directory_in_a_bag_is_not_read_the_next_copy_is(tree, how, tmp_path):
    root, sentinel = tree
    loc = tmp_path / "loc"
    digest, size = source_in_bag(loc, "write/good/data/d/f")
    # The first copy's data/d is a link to a directory outside the location whose file
    # has the right bytes: still refused (the location's tree is not what was checked).
    (sentinel / "d").mkdir()
    (sentinel / "d" / "f").write_bytes((loc / "write/good/data/d/f").read_bytes())
    (loc / "write" / "linked" / "data").mkdir(parents=True)
    os.symlink(sentinel / "d", loc / "write" / "linked" / "data" / "d")
    # and a file that is itself a link
    (loc / "write" / "filelink" / "data" / "d").mkdir(parents=True)
    os.symlink(sentinel / "d" / "f", loc / "write" / "filelink" / "data" / "d" / "f")
    job = rooted_job(root, "d/f", loc, ["write/linked/data/d/f", "write/filelink/data/d/f",
                                        "write/good/data/d/f"], digest, size)
    done, = run_batch(Batch([job], fail_fast=False, list_targets=True)).outcomes
    assert isinstance(done, Done) and done.source == 2
    assert [i for i, _ in done.problems] == [0, 1]
    assert all("symbolic link" in m for _, m in done.problems)
    assert str(loc / "write" / "linked" / "data" / "d") in done.problems[0][1]


def test_a_link_left_by_a_symlink_mode_purge_is_replaced_never_followed(tree, how, tmp_path):
    root, sentinel = tree
    (sentinel / "copy").write_bytes(b"the copy in the bag")
    os.symlink(sentinel / "copy", root / "a" / "b" / "c" / "linked")
    loc = tmp_path / "loc"
    digest, size = source_in_bag(loc, "write/bag/data/f")
    job = rooted_job(root, "a/b/c/linked", loc, ["write/bag/data/f"], digest, size)
    done, = run_batch(Batch([job], fail_fast=False, list_targets=True)).outcomes
    assert isinstance(done, Done)
    target = root / "a" / "b" / "c" / "linked"
    assert not target.is_symlink()
    assert target.read_bytes() == (loc / "write/bag/data/f").read_bytes()
    assert (sentinel / "copy").read_bytes() == b"the copy in the bag"  # untouched
    assert os.stat(sentinel / "copy").st_mode & 0o777 != 0o640


def test_a_rooted_job_given_up_leaves_no_temporary_file(tree, how, tmp_path):
    root, _ = tree
    loc = tmp_path / "loc"
    digest, size = source_in_bag(loc, "write/bag/data/f")
    job = rooted_job(root, "a/x", loc, ["write/bag/data/f"], "0" * 40, size)  # bad sha1
    failed, = run_batch(Batch([job], fail_fast=False)).outcomes
    assert isinstance(failed, Failed) and "checksum" in failed.problems[0][1]
    assert not any(n.endswith(TMP_SUFFIX) for n in os.listdir(root / "a"))
    assert not (root / "a" / "x").exists()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_replace_file_writes_whole_beneath_the_root_and_never_through_a_link(tree, how, depth):
    """The purge-record and file-record tag files of a bag (purgetags, filetags) are
    written with replace_file: in place of the old one, whole, and never through a
    directory someone replaced by a symbolic link."""
    root, sentinel = tree
    beneath.replace_file(root, "a/b/c/records.txt", [b"one\n", b"two\n"])
    beneath.replace_file(root, "a/b/c/records.txt", [b"three\n"])
    assert (root / "a/b/c/records.txt").read_bytes() == b"three\n"
    assert sorted(os.listdir(root / "a/b/c")) == ["f", "records.txt"]  # no temporary left
    link_away(root, sentinel, depth)
    before = snapshot(sentinel)
    with pytest.raises(OutsideRoot):
        beneath.replace_file(root, "a/b/c/records.txt", [b"elsewhere\n"])
    assert snapshot(sentinel) == before

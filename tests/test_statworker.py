"""The stat/verify worker processes of a bulk scan (engine/statworker.py, engine/bulk.py).

The generated facility's scans (tests/test_scan.py) check the figures end to end; here
the worker's own edges: names PostgreSQL escapes in COPY text, a worker that dies, and
verify reporting damage without touching access times.
"""
import hashlib
import os

import pytest

from omero_storagemanager.catalog.paths import RepositoryPaths
from omero_storagemanager.engine import statworker
from omero_storagemanager.engine.statpool import StatWorkerFailed, WorkerPool

ODD_NAMES = ["tab\there.tif", "back\\slash.tif", "new\nline.tif", "quote\"'.tif",
             "Zellkern Färbung 1.tif", "carriage\rreturn.tif"]


@pytest.fixture
def repo(tmp_path):
    managed = tmp_path / "OMERO" / "ManagedRepository"
    (managed / "u_1" / "2024-01").mkdir(parents=True)
    for i, name in enumerate(ODD_NAMES):
        (managed / "u_1" / "2024-01" / name).write_bytes(b"x" * (i + 1))
    return RepositoryPaths(tmp_path / "OMERO", managed)


def copy_rows(pg_server, rows):
    """The rows as PostgreSQL's COPY writes them: its own escaping, not ours."""
    conn = pg_server.connect()
    try:
        out = []

        class Sink:
            write = out.append
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
        with conn.cursor() as cur:
            query = cur.mogrify(f"SELECT * FROM (VALUES {values}) v", [x for r in rows for x in r])
            cur.copy_expert(f"COPY ({query.decode()}) TO STDOUT", Sink())
        return b"".join(out).splitlines(keepends=True)
    finally:
        conn.close()


def test_names_escaped_by_copy_are_found_on_disk(pg_server, repo):
    rows = [("f", 7, "fileset_entry", "u_1/2024-01", name, i, i + 1, None, None)
            for i, name in enumerate(ODD_NAMES)]
    lines = copy_rows(pg_server, rows)
    assert any(b"\\t" in line for line in lines)  # PostgreSQL did escape them
    units, problems = statworker.check_rows(lines, os.fsencode(repo.managed_dir),
                                            os.fsencode(repo.data_dir), verify=False)
    assert problems == {}
    figures = dict(zip(statworker.FIELDS, units[(b"f", b"7")]))
    assert figures["files"] == len(ODD_NAMES) and figures["missing"] == 0
    assert figures["bytes"] == sum(range(1, len(ODD_NAMES) + 1))
    assert figures["unhashed"] == len(ODD_NAMES)


def test_verify_names_damage_and_keeps_access_times(pg_server, repo):
    good = os.path.join(repo.managed_dir, "u_1", "2024-01", ODD_NAMES[0])
    bad = os.path.join(repo.managed_dir, "u_1", "2024-01", ODD_NAMES[1])
    os.utime(good, (1_000_000, 1_000_000))
    rows = [("f", 1, "fileset_entry", "u_1/2024-01", ODD_NAMES[0], 1, 1,
             hashlib.sha1(b"x").hexdigest(), "SHA1-160"),
            ("f", 1, "fileset_entry", "u_1/2024-01", ODD_NAMES[1], 2, 2,
             hashlib.sha1(b"not it").hexdigest().upper(), "SHA1-160"),
            ("f", 1, "fileset_entry", "u_1/2024-01", "gone.tif", 3, 5, None, None),
            ("f", 1, "fileset_entry", "u_1/2024-01", ODD_NAMES[2], 4, 3,
             "0000", "Murmur3-128")]
    units, problems = statworker.check_rows(copy_rows(pg_server, rows),
                                            os.fsencode(repo.managed_dir),
                                            os.fsencode(repo.data_dir), verify=True)
    figures = dict(zip(statworker.FIELDS, units[(b"f", b"1")]))
    assert figures["checksum_mismatches"] == 1 and figures["missing"] == 1
    assert figures["mismatched_sizes"] == 0 and figures["files"] == 4
    found = sorted((p["path"], p["problem"]) for p in problems[(b"f", b"1")])
    assert found == sorted([(bad, "checksum mismatch"),
                            (os.path.join(repo.managed_dir, "u_1", "2024-01", "gone.tif"), "missing"),
                            (os.path.join(repo.managed_dir, "u_1", "2024-01", ODD_NAMES[2]),
                             "checksum unsupported")])
    assert os.stat(good).st_atime == 1_000_000  # read with O_NOATIME: not "accessed"


def test_the_pool_splits_rows_over_processes_and_sums_them(pg_server, repo):
    rows = [("f", 9, "fileset_entry", "u_1/2024-01", name, i, i + 1, None, None)
            for i, name in enumerate(ODD_NAMES)] * 50
    pool = WorkerPool(repo, verify=False, processes=2)
    try:
        for line in copy_rows(pg_server, rows):
            pool.write(line)
            pool.flush()  # one row per piece: both processes get some
        results = pool.finish()
    finally:
        pool.kill()
    assert len(results) == 2 and all(units for units, _ in results)
    assert sum(units[(b"f", b"9")][0] for units, _ in results) == len(rows)


def test_a_worker_that_dies_is_a_clear_error(repo):
    pool = WorkerPool(repo, verify=False, processes=2)
    try:
        pool.procs[1].kill()
        pool.procs[1].wait()
        with pytest.raises(StatWorkerFailed, match="stat worker exited with -9"):
            for _ in range(200):  # until the dead worker's pipe is written to
                pool.write(b"f\t1\tfileset_entry\tu_1\tx\t1\t1\t\\N\t\\N\n")
                pool.flush()
            pool.finish()
    finally:
        pool.kill()


def test_units_no_collection_holds_are_stat_ed_but_left_out_of_every_figure():
    """The stream covers every fileset and image, orphans too (its rows start at once);
    what no Project or Screen holds must not reach any collection's figures."""
    from omero_storagemanager.engine.bulk import _add_up
    from omero_storagemanager.engine.statworker import FIELDS

    def figures(files, nbytes, missing=0):
        v = [0] * len(FIELDS)
        v[FIELDS.index("files")], v[FIELDS.index("bytes")] = files, nbytes
        v[FIELDS.index("missing")] = missing
        v[FIELDS.index("newest")] = v[FIELDS.index("accessed")] = 1.7e9
        return v

    units = {("f", 1): figures(3, 300), ("f", 2): figures(5, 500, missing=1),
             ("i", 7): figures(1, 10)}
    problems = {("f", 2): [{"path": "/orphan", "problem": "missing"}]}
    holders = {("f", 1): {("project", 4)}, ("i", 7): {("project", 4), ("screen", 2)}}
    out, found = _add_up(units, problems, holders, {("project", 4): 2}, verify=False)
    assert set(out) == {("project", 4), ("screen", 2)}
    assert (out[("project", 4)].files, out[("project", 4)].bytes) == (4, 310)
    assert out[("project", 4)].missing_files == 0 and out[("project", 4)].images == 2
    assert out[("project", 4)].shared_bytes == 10 and out[("screen", 2)].shared_bytes == 10
    assert found == {}


def test_folders_opened_once_per_run_of_rows_and_units_that_come_back(pg_server, repo,
                                                                     tmp_path):
    """A file at the repository's top (folder ''), a folder that is gone (its files
    missing), an in-place-import symlink stat'ed through its folder, and a unit whose
    rows come in two runs with another unit's between them."""
    managed = repo.managed_dir
    with open(os.path.join(managed, "top.tif"), "wb") as f:
        f.write(b"abc")
    target = tmp_path / "elsewhere.tif"
    target.write_bytes(b"0123456789")
    os.symlink(target, os.path.join(managed, "u_1", "2024-01", "linked.tif"))
    rows = [("f", 1, "fileset_entry", "u_1/2024-01", ODD_NAMES[0], 1, 1, None, None),
            ("f", 2, "fileset_entry", "", "top.tif", 2, 3, None, None),
            ("f", 1, "fileset_entry", "u_1/2024-01", "linked.tif", 3, 10, None, None),
            ("f", 1, "fileset_entry", "u_9/gone", "a.tif", 4, 1, None, None),
            ("f", 1, "fileset_entry", "u_9/gone", "b.tif", 5, 1, None, None)]
    units, problems = statworker.check_rows(copy_rows(pg_server, rows),
                                            os.fsencode(managed), os.fsencode(repo.data_dir),
                                            verify=False)
    one = dict(zip(statworker.FIELDS, units[(b"f", b"1")]))
    two = dict(zip(statworker.FIELDS, units[(b"f", b"2")]))
    assert (two["files"], two["bytes"], two["missing"]) == (1, 3, 0)
    assert (one["files"], one["bytes"], one["symlinks"], one["missing"]) == (4, 11, 1, 2)
    assert sorted(p["path"] for p in problems[(b"f", b"1")]) == [
        os.path.join(managed, "u_9", "gone", "a.tif"),
        os.path.join(managed, "u_9", "gone", "b.tif")]
    assert (b"f", b"2") not in problems

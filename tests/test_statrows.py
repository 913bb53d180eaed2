"""The stat scan's C loop (engine/_statrows.c) against the Python loop it shortcuts.

The C loop counts only rows whose file is there with OMERO's size and hands every
other row back to statworker.check_rows; these tests hold it to that: what it counts
equals what the Python loop counts, to the float, and what it hands back is exactly
what it cannot count. The generated facility's scans (tests/test_scan.py) run through
it end to end against the ground truth.
"""
import os

import psycopg2
import pytest

from omero_storagemanager.catalog.paths import RepositoryPaths
from omero_storagemanager.engine import statworker
from omero_storagemanager.engine.bulk import pyramid_rows, rows_sql

from .test_statworker import copy_rows



def _stat_rows():
    try:
        from omero_storagemanager.engine._statrows import stat_rows
    except ImportError as e:
        pytest.fail(f"the C extension omero_storagemanager.engine._statrows is not built ({e}): "
                    "install a C compiler and Python's headers (Debian: gcc python3-dev) "
                    "and reinstall (scripts/dev-env.sh, or pip install -e .)")
    return stat_rows


def test_the_stat_worker_uses_the_c_loop():
    assert statworker.stat_rows is _stat_rows()


def fields(line):
    return line.rstrip(b"\n").split(b"\t")


@pytest.fixture
def tree(tmp_path):
    data = tmp_path / "OMERO"
    managed = data / "ManagedRepository"
    (managed / "u_1").mkdir(parents=True)
    for name, size in [("a.tif", 3), ("b.tif", 5), ("tab\there.tif", 2)]:
        (managed / "u_1" / name).write_bytes(b"x" * size)
    (managed / "top.log").write_bytes(b"log")
    (data / "Pixels" / "Dir-001" / "Dir-234").mkdir(parents=True)
    (data / "Pixels" / "Dir-001" / "Dir-234" / "1234567").write_bytes(b"p" * 8)
    (data / "Files").mkdir()
    (tmp_path / "elsewhere.tif").write_bytes(b"e" * 4)
    os.symlink(tmp_path / "elsewhere.tif", data / "Files" / "5")  # in-place import
    (data / "Thumbnails").mkdir()
    (data / "Thumbnails" / "9").write_bytes(b"t" * 6)
    os.utime(managed / "u_1" / "a.tif", ns=(1_700_000_000_123_456_789, 1_600_000_000_987_654_321))
    return RepositoryPaths(data, managed)


def call(block, paths, end=None):
    return _stat_rows()(block, len(block) if end is None else end,
                        os.fsencode(paths.managed_dir) + b"/", os.fsencode(paths.data_dir) + b"/")


def test_found_files_are_counted_in_runs_per_unit(tree):
    block = (b"f\t1\tfileset_entry\tu_1\ta.tif\t1\t3\t\t\\N\n"
             b"f\t1\tfileset_entry\tu_1\tb.tif\t2\t\\N\t\\N\t\\N\n"
             b"f\t1\timport_log\t\ttop.log\t3\t3\t\t\\N\n"
             b"i\t4\tpixels\t\\N\t\\N\t1234567\t8\t\\N\t\\N\n"
             b"i\t4\toriginal\t\\N\t\\N\t5\t4\t\t\\N\n"
             b"i\t4\tthumbnail\t\\N\t\\N\t9\t\\N\t\\N\t\\N\n"
             b"i\t4\tthumbnail\t\\N\t\\N\t10\t\\N\t\\N\t\\N\n")
    runs, rest, rows, row_bytes = call(block, tree)
    assert rest == [] and rows == 7 and row_bytes == 3 + 5 + 3 + 8 + 4
    a = os.stat(os.path.join(tree.managed_dir, "u_1", "a.tif"))
    newest = max(os.stat(os.path.join(tree.managed_dir, p)).st_mtime
                 for p in ("u_1/a.tif", "u_1/b.tif", "top.log"))
    assert runs[0][:9] == (b"f", b"1", 3, 11, 1, 0, 0, 0, 0)
    assert runs[0][9] == newest and runs[0][10] >= a.st_atime
    # Pixels/ and Files/ by OMERO's numbered layout; a missing thumbnail is no problem.
    assert runs[1][:9] == (b"i", b"4", 2, 12, 1, 1, 0, 2, 6)


def test_times_are_the_floats_python_gives(tree):
    runs, _, _, _ = call(b"f\t1\tfileset_entry\tu_1\ta.tif\t1\t3\t\t\\N\n", tree)
    st = os.stat(os.path.join(tree.managed_dir, "u_1", "a.tif"))
    assert (runs[0][9], runs[0][10]) == (st.st_mtime, st.st_atime)


def test_what_it_cannot_count_is_handed_back_untouched(tree):
    counted = b"f\t1\tfileset_entry\tu_1\ta.tif\t1\t3\t\t\\N\n"
    handed_back = [
        b"f\t1\tfileset_entry\tu_1\tgone.tif\t2\t3\t\t\\N\n",          # missing
        b"f\t1\tfileset_entry\tu_1\tb.tif\t3\t99\t\t\\N\n",           # size mismatch
        b"f\t1\tfileset_entry\tu_1\ttab\\there.tif\t4\t2\t\t\\N\n",    # an escape
        b"f\t1\tfileset_entry\tu_1\ta.tif\t1\t3\t\n",                  # eight fields
        b"f\t1\tfileset_entry\tu_1\ta.tif\t1\t3\t\t\\N\textra\n",      # ten fields
        b"f\t1\tfileset_entry\tu_1\t\\N\t5\t3\t\t\\N\n",               # no name
        b"f\t1\tfileset_entry\tno_such_folder\ta.tif\t6\t3\t\t\\N\n",  # folder gone
        b"f\t1\tfileset_entry\tu_1\ta.tif\t7\t-3\t\t\\N\n",            # odd size
        b"i\t2\tpixels\t\\N\t\\N\t7\t8\t\\N\t\\N\n",                   # missing pixels
        b"i\t2\tpixels\t\\N\t\\N\tx7\t8\t\\N\t\\N\n",                  # odd id
    ]
    block = counted + b"".join(handed_back)
    runs, rest, rows, _ = call(block, tree)
    assert rest == handed_back and rows == 1 and runs[0][2] == 1


def test_slashes_at_the_ends_of_omero_paths_and_names_mean_nothing(tree):
    # The server sends OMERO's path and name as stored (bulk._REL): "u_1/" as FS
    # writes it, or with a "/" more; both loops find the same files either way.
    plain = b"f\t1\tfileset_entry\tu_1\ta.tif\t1\t3\t\t\\N\n"
    variants = [b"f\t1\tfileset_entry\tu_1/\ta.tif\t1\t3\t\t\\N\n",
                b"f\t1\tfileset_entry\t/u_1/\t/a.tif\t1\t3\t\t\\N\n",
                b"f\t1\timport_log\t/\ttop.log\t3\t3\t\t\\N\n"]
    expected = call(plain, tree)[0][0][:9]
    for row in variants[:2]:
        runs, rest, rows, _ = call(row, tree)
        assert rest == [] and runs[0][:9] == expected, row
    assert call(variants[2], tree)[2] == 1
    _assert_loops_agree(b"".join(variants), tree)


def test_a_missing_file_is_named_as_the_inventory_names_it(tree):
    row = b"f\t1\tfileset_entry\t/u_1/\t/gone.tif\t2\t3\t\t\\N\n"
    managed, data = os.fsencode(tree.managed_dir), os.fsencode(tree.data_dir)
    _, problems = statworker.check_rows([row], managed, data, False)
    assert problems[(b"f", b"1")] == [
        {"path": tree.managed("/u_1/", "gone.tif"), "problem": "missing"}]


def test_a_pyramid_row_names_its_path_below_the_data_dir(tree):
    pyramid = os.path.join(tree.data_dir, "Pixels", "Dir-001", "Dir-234", "1234567_pyramid")
    with open(pyramid, "wb") as f:
        f.write(b"y" * 7)
    row = b"i\t4\tpyramid\t\\N\tPixels/Dir-001/Dir-234/1234567_pyramid\t1234567\t\\N\t\\N\t\\N\n"
    runs, rest, rows, row_bytes = call(row, tree)
    assert rest == [] and row_bytes == 7
    assert runs[0][:9] == (b"i", b"4", 1, 7, 1, 0, 1, 0, 0)
    _assert_loops_agree(row, tree)


def test_rows_after_end_are_left_and_the_last_row_may_lack_its_newline(tree):
    row = b"f\t1\tfileset_entry\tu_1\ta.tif\t1\t3\t\t\\N\n"
    runs, rest, rows, _ = call(row + row[:20], tree, end=len(row))
    assert rows == 1 and rest == []
    runs, rest, rows, _ = call(row + row.rstrip(b"\n"), tree)
    assert rows == 2 and runs[0][2] == 2
    with pytest.raises(ValueError, match="outside"):
        call(row, tree, end=len(row) + 1)


def test_stream_equals_the_python_loop_on_escaped_missing_and_mismatched_rows(pg_server, tree):
    rows = [("f", 1, "fileset_entry", "u_1", "a.tif", 1, 3, None, None),
            ("f", 1, "fileset_entry", "u_1", "tab\there.tif", 2, 2, "abc", None),
            ("f", 1, "fileset_entry", "u_1", "gone.tif", 3, 1, None, None),
            ("f", 2, "fileset_entry", "u_1", "b.tif", 4, 4, None, None),
            ("i", 3, "pixels", None, None, 1234567, 8, None, None),
            ("i", 3, "thumbnail", None, None, 9, None, None, None)] * 40
    lines = copy_rows(pg_server, rows)
    _assert_loops_agree(b"".join(lines), tree)


def _assert_loops_agree(stream, paths):
    managed, data = os.fsencode(paths.managed_dir), os.fsencode(paths.data_dir)
    expected = statworker.check_rows(stream.splitlines(keepends=True), managed, data, False)
    for piece in (7, 4096, 1 << 20):  # reads that split rows anywhere, and whole blocks
        offset = 0

        def read(size):
            nonlocal offset
            chunk = stream[offset:offset + min(size, piece)]
            offset += len(chunk)
            return chunk
        assert statworker.check_stream(read, managed, data) == expected, piece
    return expected


def test_both_loops_agree_on_the_generated_facility(facility):
    conn = psycopg2.connect(facility.dsn)
    try:
        paths = RepositoryPaths(facility.truth.data_dir, facility.truth.managed_dir)
        out = []

        class Sink:
            write = out.append
        with conn.cursor() as cur:
            for sql in rows_sql(False):
                cur.copy_expert(f"COPY ({sql}) TO STDOUT", Sink())
        out.extend(pyramid_rows(conn, paths))
    finally:
        conn.close()
    units, problems = _assert_loops_agree(b"".join(out), paths)
    totals = [sum(u[i] for u in units.values()) for i in range(10)]
    got = dict(zip(statworker.FIELDS, totals))
    # The facility has every kind of row the C loop counts or hands back.
    assert all(got[k] > 0 for k in ("files", "missing", "mismatched_sizes", "symlinks",
                                     "pyramids", "thumbnails", "unhashed")), got
    assert problems

"""The demo's big collection (issue 22): one Project grown to a given size in seconds
with a hole (no disk blocks), its database size and SHA1 updated, so a scan, archive and
restore of it see a consistent large file."""
import hashlib
import os

import psycopg2

from testbed.demo import grow_one_collection


def test_one_project_grows_sparse_and_consistent(facility):
    key = grow_one_collection(facility.dsn, facility.truth, 0.25)
    assert key is not None and key not in ("Project:2", "Project:3", "Project:4")
    [record] = [f for f in facility.truth.collection("project", int(key.split(":")[1]))["files"]
                if f["size"] == 2**28]
    st = os.stat(record["path"])
    assert st.st_size == 2**28
    assert st.st_blocks * 512 < 2**24  # a hole, not 256 MiB of blocks
    with open(record["path"], "rb") as handle:
        assert hashlib.sha1(handle.read()).hexdigest() == record["hash"]
    with psycopg2.connect(facility.dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT size, hash FROM originalfile WHERE id = %s",
                    [record["originalfile_id"]])
        assert cur.fetchone() == (2**28, record["hash"])

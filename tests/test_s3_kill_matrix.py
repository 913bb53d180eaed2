"""S3 in the kill -9 matrix (tests/reliability/matrix_s3.py), quick form: a django-q2
worker SIGKILLed mid-job during an archive to, a purge relying on and a restore from an
S3 location (a real SeaweedFS server, a real `manage.py qcluster`), the job resumed by a
new worker; nothing lost, no copy counted verified early (every verified copy whole on
the server, object for row), no unsafe delete, no multipart upload left behind. The
console script's S3 trials are tests/test_s3_kill.py; the full run is
`.venv/bin/python -m tests.reliability.matrix_s3`.
"""
import json

import pytest

from tests.reliability.matrix import COUNTERS, OPERATIONS, plan
from tests.reliability.matrix_s3 import run_s3_matrix, s3_result
from tests.reliability.report import record

QUICK = {"console": 0, "worker": 3, "web": 0}
QUICK_SEED = 42  # one trial per operation, each killing the worker running the job once
# a share of its progress rows is written (mid-job for sure; delays may fall before it starts)


def test_quick_plan_has_one_worker_trial_per_operation():
    trials = plan(QUICK_SEED, **QUICK)
    assert sorted(op for _, op, _ in trials) == sorted(OPERATIONS)
    assert {(kind, kill[2]) for kind, _, kill in trials} == {("worker", "worker")}


@pytest.mark.slow
def test_worker_killed_mid_s3_job_resumes_and_loses_nothing(pg_server, app_db, s3_server,
                                                            tmp_path):
    results, elapsed = run_s3_matrix(pg_server, s3_server, QUICK_SEED, budget=400,
                                     log=print, **QUICK)
    assert len(results) == 3
    for t in results:
        assert not t.bad(), f"trial {t.index} ({t.kind}, {t.operation}, {t.kill}): {t.notes}"
        assert t.killed, f"{t.operation} ended before its kill point ({t.kill})"
    assert any(t.attempts > 1 for t in results)  # resumed by a new attempt
    total = record(s3_result(results, QUICK_SEED, QUICK, elapsed, "quick"), tmp_path / "r",
                   tmp_path / "page.md")
    assert total == {"trials": 3, "lost": 0, "violations": 0}
    saved = json.loads((tmp_path / "r" / "kill-matrix-s3.json").read_text())
    rows = {(r[0], r[1]): r for r in saved["rows"]}
    assert rows[("**all**", "")][2:3 + len(COUNTERS)] == [3] + [0] * len(COUNTERS)
    assert "## Kill -9 matrix at an S3 location" in (tmp_path / "page.md").read_text()


@pytest.mark.slow
def test_the_s3_counters_see_a_changed_object_an_unsafe_delete_and_an_open_upload(
        pg_server, app_db, s3_server, tmp_path):
    """A counter that never fires proves nothing: each S3 counter does fire."""
    from omero_storagemanager import settings
    from omero_storagemanager.models import Copy
    from tests.reliability.matrix import Trial
    from tests.reliability.matrix_s3 import S3Setup

    saved, S3Setup.s3 = settings.S3_CREDENTIALS, s3_server
    s = S3Setup(pg_server, Trial(0, "restore", "", kind="console"),
                ("delay", 1.0, "process"), 99, tmp_path)  # archived, then purged
    try:
        assert s.corrupt_copies(at_end=True) == (0, [])
        assert s.unsafe()[0] == 0
        copy = Copy.objects.get(location=s.location, state=Copy.VERIFIED)
        entry = copy.entries.order_by("relpath").first()
        client = s3_server.client()
        client.put_object(Bucket=s.bucket, Key=f"{s.base(copy)}/data/{entry.relpath}",
                          Body=b"other bytes")
        n, notes = s.corrupt_copies()
        assert n == 1 and "differs from its row" in notes[0], notes
        n, notes, _ = s.unsafe()
        assert n == 1 and "without a verified object" in notes[0], notes
        client.create_multipart_upload(Bucket=s.bucket, Key="k/left-behind")
        assert s.corrupt_copies()[0] == 1  # right after a kill, an open upload is allowed
        n, notes = s.corrupt_copies(at_end=True)
        assert n == 2 and "left open" in notes[-1], notes
    finally:
        s.close()
        settings.S3_CREDENTIALS = saved

"""Issue 7: a quick seeded kill -9 matrix must lose, corrupt or unsafely delete nothing,
get stuck nowhere, make one job per action and answer no 5xx: archive, purge and
restore killed at random instants as a console script, as a django-q2 worker (the job
queued through the app, on a real cluster) and as OMERO.web (gunicorn) during the
action's request. The full matrix (`.venv/bin/python -m tests.reliability.matrix`)
records into docs/reliability/; this quick one records into a temporary directory."""
import json

import pytest

from tests.reliability.matrix import (COUNTERS, KINDS, OPERATIONS, TARGETS, plan,
                                      result_of, run_matrix)
from tests.reliability.report import record

QUICK = {"console": 6, "worker": 2, "web": 1}
QUICK_SEED = 145  # a plan whose worker trials are killed at progress rows: mid-job for sure


def test_plan_is_seeded_mixes_kinds_and_covers_every_operation():
    assert plan(1, 12, 6, 3) == plan(1, 12, 6, 3) and plan(1, 12, 6, 3) != plan(2, 12, 6, 3)
    full = plan(1, 55, 30, 15)
    assert len(full) >= 100
    for kind in KINDS:
        mine = [t for t in full if t[0] == kind]
        assert {op for _, op, _ in mine} == set(OPERATIONS)
        assert {kill[2] for _, _, kill in mine} == set(TARGETS[kind])
    first = [kind for kind, _, _ in full[:10]]
    assert set(first) == set(KINDS)  # interleaved: a run cut short still has every kind
    quick = plan(QUICK_SEED, **QUICK)
    assert [sum(t[0] == k for t in quick) for k in KINDS] == [QUICK[k] for k in KINDS]
    assert {op for kind, op, _ in quick if kind == "console"} == set(OPERATIONS)


@pytest.mark.slow
def test_quick_kill_matrix_loses_nothing(pg_server, app_db, tmp_path):
    results, elapsed = run_matrix(pg_server, QUICK_SEED, budget=240, log=lambda s: None,
                                  **QUICK)
    assert len(results) == sum(QUICK.values())
    for t in results:
        assert not t.bad(), f"trial {t.index} ({t.kind}, {t.operation}, {t.kill}): {t.notes}"
    assert any(t.killed for t in results if t.kind == "console")  # killed mid-run
    assert any(t.killed for t in results if t.kind == "worker")  # killed mid-job...
    assert any(t.attempts > 1 for t in results if t.kind == "worker")  # ...and resumed
    result = result_of(results, QUICK_SEED, QUICK, elapsed, "quick")
    total = record(result, tmp_path / "r", tmp_path / "page.md")
    assert total == {"trials": sum(QUICK.values()), "lost": 0, "violations": 0}
    saved = json.loads((tmp_path / "r" / "kill-matrix.json").read_text())
    assert saved["order"] == 10 and saved["title"] == "Kill -9 matrix"
    rows = {(r[0], r[1]): r for r in saved["rows"]}
    for kind, title in (("console", "console script"), ("worker", "django-q2 worker"),
                        ("web", "web process")):
        assert sum(rows[(title, op)][2] for op in OPERATIONS) == QUICK[kind]
    assert rows[("**all**", "")][2:2 + 1 + len(COUNTERS)] == [sum(QUICK.values())] + [0] * len(COUNTERS)
    text = (tmp_path / "page.md").read_text()
    assert "## Kill -9 matrix" in text and "| django-q2 worker | " in text
    assert "test_archive_faults" not in text  # storage faults are the "faults" part


def test_the_lost_counter_sees_a_lost_and_a_changed_file(tmp_path):
    """A counter that never fires proves nothing: it does fire."""
    from tests.reliability.matrix import count_lost
    from tests.test_archive_faults import sha1

    a, b, c = (tmp_path / n for n in "abc")
    for p in (a, b, c):
        p.write_bytes(p.name.encode())
        p.chmod(0o644)
    before = {str(p): (sha1(p), 0o644) for p in (a, b, c)}
    assert count_lost(before) == (0, [])
    a.unlink()
    b.write_bytes(b"other")
    n, notes = count_lost(before)
    assert n == 2 and notes == [f"lost {a}", f"changed {b}"]
    assert count_lost(before, purge_rows={str(a)})[0] == 1  # a purge record accounts for a
    c.chmod(0o600)
    assert count_lost(before, purge_rows={str(a)})[0] == 2  # a mode change is a change

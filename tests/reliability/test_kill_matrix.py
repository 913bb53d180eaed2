"""Issue 7: a quick seeded kill -9 matrix (archive, purge, restore killed at random
instants, then run again) must lose, corrupt or unsafely delete nothing, and get stuck
nowhere. The full matrix (`.venv/bin/python -m tests.reliability.matrix --trials 100
--seed 1`) writes docs/reliability.md; this quick one writes its report to a tmp path."""
import re

import pytest

from tests.reliability.matrix import COUNTERS, OPERATIONS, plan, run_matrix, write_report

QUICK_TRIALS = 6
QUICK_SEED = 7


def test_plan_is_seeded_and_covers_every_operation():
    assert plan(12, 1) == plan(12, 1) and plan(12, 1) != plan(12, 2)
    assert {op for op, _ in plan(QUICK_TRIALS, QUICK_SEED)} == set(OPERATIONS)


@pytest.mark.slow
def test_quick_kill_matrix_loses_nothing(pg_server, app_db, tmp_path):
    results, elapsed = run_matrix(pg_server, QUICK_TRIALS, QUICK_SEED, budget=150,
                                  log=lambda s: None)
    assert len(results) == QUICK_TRIALS
    for t in results:
        assert not t.bad(), f"trial {t.index} ({t.operation}, {t.kill}): {t.notes}"
    assert any(t.killed for t in results)  # the matrix did kill something mid-run
    report = tmp_path / "reliability.md"
    total = write_report(report, results, QUICK_SEED, QUICK_TRIALS, elapsed, "quick")
    assert total == {c: 0 for c in COUNTERS}
    text = report.read_text()
    assert f"seed: {QUICK_SEED}; trials asked: {QUICK_TRIALS}; trials run: {QUICK_TRIALS}" in text
    for op in OPERATIONS:
        n = sum(t.operation == op for t in results)
        assert re.search(rf"\| kill -9 during {op} \(random\) \| {n} \| 0 \| 0 \| 0 \| 0 \|", text)
    assert f"| **all** | {QUICK_TRIALS} | 0 | 0 | 0 | 0 |" in text
    assert "test_purge_killed_then_run_again_completes` | 3 per test run" in text
    assert "test_archive_killed_then_run_again_completes` | 4 per test run" in text


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

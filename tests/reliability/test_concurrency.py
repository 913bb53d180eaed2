"""Issue 7: concurrency, quick form of tests/reliability/concurrency.py.

The same trial functions as the full part (`.venv/bin/python -m tests.reliability.concurrency`):
one trial per case with fixed seeds, recorded into tmp_path so CI never rewrites docs/.
"""
import json
import shutil

import pytest

from tests.reliability.concurrency import (BUSY, CLASSES, RACES, plan, result_for, run_part,
                                           verdict)
from tests.reliability.report import assert_clean, record


check = assert_clean


def test_plan_is_seeded_and_covers_every_race():
    assert plan(3, 1) == plan(3, 1) and plan(3, 1) != plan(3, 2)
    assert {v for v, _ in plan(3, 1)["race"]} == set(RACES)
    assert {v for v, _ in plan(2, 1)["queue"]} == {"two jobs", "job and console"}


def test_verdicts_read_the_console_script():
    busy = f"Screen:1: {BUSY}; archive not started\nCommandError: archive found problems (exit 1)"
    assert verdict("archive", 1, "", busy) == "refused"
    assert verdict("archive", 0, "Screen:1: unchanged since its last verified copy, nothing "
                   "to copy", "") == "nothing to do"
    assert verdict("archive", 0, "Screen:1: verified copy x at 'd': 3 files", "") == "won"
    assert verdict("purge", 1, "", f"CommandError: Screen:1: {BUSY}; purge not started") \
        == "refused"
    assert verdict("restore", 0, "Screen:1: restored 0 file(s), 0 bytes", "") == "nothing to do"
    assert verdict("restore", 0, "Screen:1: nothing to restore: its files are online",
                   "") == "nothing to do"
    assert verdict("archive", 1, "", "Traceback (most recent call last):\n boom").startswith(
        "error (exit 1)")


@pytest.mark.slow
def test_quick_console_races_have_one_winner(pg_server, app_db, tmp_path):
    schedule = {"cli": [(None, 21)], "race": [("purge vs restore", 22)]}
    results, elapsed = run_part(pg_server, 1, 7, log=lambda s: None, schedule=schedule)
    check(results, schedule)
    [twice] = results["cli"]
    assert sorted(twice.extra["verdicts"]) in (["refused", "won"], ["nothing to do", "won"])
    [race] = results["race"]
    assert "won" in race.extra["verdicts"]
    assert set(race.extra["verdicts"]) <= {"won", "refused", "nothing to do"}
    result = result_for(results, 7, 1, elapsed, "quick")
    total = record(result, tmp_path / "r", tmp_path / "page.md")
    assert total == {"trials": 2, "lost": 0, "violations": 0}
    saved = json.loads((tmp_path / "r" / "concurrency.json").read_text())
    assert [row[0] for row in saved["rows"]] == list(CLASSES.values())
    assert "## Concurrency" in (tmp_path / "page.md").read_text()


@pytest.mark.slow
def test_quick_jobs_one_at_a_time_on_one_and_two_clusters(pg_server, app_db):
    assert shutil.which("redis-server"), "redis-server is missing: apt-get install " \
                                         "redis-server (scripts/system-deps.sh)"
    schedule = {"queue": [("two jobs", 23)], "clusters": [(None, 24)]}
    results, _ = run_part(pg_server, 1, 7, log=lambda s: None, schedule=schedule,
                          bed_files=600, others=1)
    check(results, schedule)
    [queued] = results["queue"]
    assert queued.outcome.startswith("one job archived, the other")
    [batch] = results["clusters"]
    assert batch.outcome.startswith("4/4 done, each once")  # same archive twice, a scan, one other

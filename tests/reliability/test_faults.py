"""Issue 7: storage and database faults, quick form of tests/reliability/faults.py.

The same trial functions as the full part (`.venv/bin/python -m tests.reliability.faults`),
one or two trials per fault class with fixed variants, recorded into tmp_path so CI never
rewrites docs/. Needs root (tmpfs mounts, read-only remounts): it fails saying so.
"""
import json
import os

import pytest

from tests.reliability import faults
from tests.reliability.faults import CLASSES, plan, result_for, run_part
from tests.reliability.report import assert_clean, record


def needs_root():
    if os.geteuid() != 0:
        pytest.fail("the fault trials mount tmpfs disks and remount them read-only: run the "
                    "tests as root on a machine that allows mounts")


check = assert_clean


def test_plan_is_seeded_and_covers_every_variant():
    assert plan(4, 1) == plan(4, 1) and plan(4, 1) != plan(4, 2)
    full = plan(4, 1)
    assert {v for v, _ in full["bitflip"]} == set(faults.BITFLIP_VARIANTS)
    assert {v for v, _ in full["appdb"]} == {"terminate backends", "restart server"}
    assert {v for v, _ in full["readonly"]} == {"before", "mid-job"}


def test_one_clear_line_and_the_bit_flip(tmp_path):
    import random

    assert faults.one_clear_line("Screen:1: writing x failed: Read-only file system\n"
                                 "CommandError: archive found problems (exit 1)\n")
    assert not faults.one_clear_line("Traceback (most recent call last):\n  File x\nError: y")
    assert not faults.one_clear_line("first\nsecond\n")
    assert not faults.one_clear_line("")
    path = tmp_path / "payload"
    data = os.urandom(4096)
    path.write_bytes(data)
    offset, bit = faults.flip_bit(path, random.Random(3))
    after = path.read_bytes()
    diff = [i for i in range(len(data)) if data[i] != after[i]]
    assert diff == [offset] and data[offset] ^ after[offset] == 1 << bit


@pytest.mark.slow
def test_quick_storage_faults_lose_nothing(pg_server, app_db, tmp_path):
    needs_root()
    # Unmounted, permission denied and a file changed while copied run in this suite
    # already (tests/test_archive_faults.py); the full part seeds them too.
    schedule = {"full": [(None, 11)], "readonly": [("before", 13)],
                "bitflip": [("one copy, purge, flip, restore", 14),
                            ("two copies, purge, flip, restore (no audit)", 15)]}
    results, elapsed = run_part(pg_server, 1, 7, 0, log=lambda s: None, schedule=schedule)
    check(results, schedule)
    assert "No space left on device" in results["full"][0].outcome
    assert "Read-only file system" in results["readonly"][0].extra["message"]
    alone, spare = results["bitflip"]
    assert alone.extra["unrecoverable"] == 1 and "no usable verified copy" in alone.outcome
    assert "refused the damaged copy" in spare.outcome and "flip" in spare.extra
    result = result_for(results, 7, 1, 0, elapsed, "quick")
    total = record(result, tmp_path / "r", tmp_path / "page.md")
    assert total == {"trials": 4, "lost": 0, "violations": 0}
    saved = json.loads((tmp_path / "r" / "faults.json").read_text())
    assert [row[0] for row in saved["rows"]] == list(CLASSES.values())
    rows = {row[0]: row for row in saved["rows"]}
    assert rows[CLASSES["bitflip"]][1] == 2 and rows[CLASSES["bitflip"]][3] == 0
    assert "## Storage and database faults" in (tmp_path / "page.md").read_text()


@pytest.mark.slow
def test_quick_database_faults_end_cleanly(pg_server, app_db):
    schedule = {"omerodb": [("keys", 16)], "appdb": [("terminate backends", 17)]}
    results, _ = run_part(pg_server, 1, 7, 0, log=lambda s: None, schedule=schedule,
                          bed_files=1000)
    check(results, schedule)
    [scan] = results["omerodb"]
    assert "connection lost during the scan" in scan.extra["error"], scan.extra
    assert "OMERO database" in scan.extra["error"]
    [job] = results["appdb"]
    assert job.outcome.startswith(("done", "failed")) and "stuck" not in job.outcome
    assert job.outcome.startswith("done") or "retried: done" in job.outcome, job.outcome
    assert job.extra["terminated"] >= 1  # the fault did hit the app database


def test_the_archive_fault_tests_are_folded_in_as_trials(tmp_path):
    """A JUnit report of tests/test_archive_faults.py becomes trials of its fault class;
    a failed test is a violation and counts as lost."""
    junit = tmp_path / "run.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_archive_faults" name="test_file_changed_while_'
        'copied_is_never_archived" time="1.5"/>'
        '<testcase classname="tests.test_archive_faults" name="test_disk_full_in_the_middle'
        '_of_a_file_names_the_disk_full" time="0.9"><failure message="assert primaries '
        'differ">...</failure></testcase>'
        '</testsuite></testsuites>')
    changed, full = list(faults.trials_of(junit, 2))
    assert (changed.cls, changed.outcome, changed.lost, changed.violations) == \
        ("changed", "passed", 0, [])
    assert changed.variant == "test_file_changed_while_copied_is_never_archived (run 2)"
    assert (full.cls, full.outcome, full.lost) == ("full", "failure", 1)
    assert "assert primaries differ" in full.violations[0]
    assert set(faults.FAULT_TESTS.values()) == {"full", "unmounted", "permission", "changed"}

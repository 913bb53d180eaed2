"""Issue 7, load: a quick version of tests/reliability/load.py (10 clients for 10 s against
the real demo stack while jobs run) must see no error at all and jobs finishing. The
full run (`.venv/bin/python -m tests.reliability.load`: 50 clients, 60 s) writes
docs/reliability/load.json; this one records into a temporary directory."""
import json

import pytest

from tests.reliability.load import CLASSES, percentile, result_for, run
from tests.reliability.report import record


def test_percentile_picks_the_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50 and percentile(values, 0.95) == 95
    assert percentile(values, 0.99) == 99 and percentile([], 0.5) == 0.0


def test_an_error_or_no_finished_job_is_a_violation():
    """The report does not hide what the load found."""
    figures = {"clients": 2, "admins": 1, "users": 2, "seconds": 1.0, "requests": 3,
               "errors": ["status /x: HTTP 500: boom"], "times": {"status": [1.0, 2.0]},
               "by_role": {"admin": 1, "user": 1}, "submitted": {"scan": 1},
               "jobs_finished": {"done": 0, "failed": 0, "cancelled": 0},
               "jobs_active_after": 1, "jobs_before": {}}
    result = result_for(figures, "quick", tracebacks=["gunicorn.log: Traceback"])
    assert len(result["violations"]) == 3
    assert any("HTTP 500" in v for v in result["violations"])
    assert any("no job completed" in v for v in result["violations"])


@pytest.mark.slow
def test_quick_load_has_no_errors_and_jobs_progress(tmp_path):
    figures, tracebacks = run(clients=10, seconds=10, seed=3, workdir=tmp_path,
                              log=lambda s: None)
    assert figures["errors"] == [], figures["errors"][:5]
    assert tracebacks == [], tracebacks[:5]
    assert figures["clients"] == 10 and 1 <= figures["admins"] < 10 and figures["users"] >= 5
    assert figures["requests"] >= 50, figures["requests"]
    assert set(figures["times"]) == set(CLASSES), figures["times"].keys()
    assert figures["submitted"].get("scan", 0) >= 1
    assert figures["jobs_finished"]["done"] >= 1, figures
    result = result_for(figures, "quick")
    assert result["violations"] == []
    total = record(result, tmp_path / "r", tmp_path / "page.md")
    assert total["violations"] == 0
    saved = json.loads((tmp_path / "r" / "load.json").read_text())
    assert saved["trials"] == figures["requests"]
    assert "## Load" in (tmp_path / "page.md").read_text()

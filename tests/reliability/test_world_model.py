"""Issue 19: the long form of the model-based test (tests/reliability/world_model.py), run
small and recorded into tmp_path so CI never rewrites docs/. The quick form of the test
itself is tests/test_world_model.py.
"""
import json

import pytest

from tests.reliability.report import record
from tests.reliability.world_model import invariant_of, result_for, run_part


def test_a_violation_is_filed_under_its_invariant():
    assert invariant_of("\nINVARIANT 1 (every referenced byte ...) broken after step 3") == "1"
    assert invariant_of("INVARIANT 3 (every collection's state ...)") == "3"
    assert invariant_of("Flaky: something else") == "E"
    summary = {"seeds": [1, 2], "first_seed": 1, "examples_per_seed": 1, "example_steps": 5,
               "steps": 9, "examples": 2, "actions": 12, "elapsed": 3.0, "shrink": True,
               "kills": 1, "ignored": [], "counted": {}, "outcomes": {"ok": 7, "PurgeError": 2},
               "failures": [{"seed": 2, "invariant": "1", "message": "INVARIANT 1 broken\n x",
                             "program": "state = WorldMachine()\nstate.purge(key='Project:1')"}]}
    result = result_for(summary, "cmd")
    assert result["lost"] == 1 and result["trials"] == 9
    assert result["rows"][0][1:] == [1, "2"] and result["violations"][0].startswith(
        "seed 2, invariant 1: INVARIANT 1 broken x Minimal program: state = WorldMachine()")


@pytest.mark.slow
def test_long_form_runs_and_records(pg_server, app_db, tmp_path):
    summary, env = run_part(pg_server, steps=8, seeds=1, first_seed=3, example_steps=8,
                            kills=0, workdir=tmp_path / "work", log=lambda s: None)
    assert summary["seeds"] == [3] and summary["examples"] >= 1 and summary["steps"] >= 1
    result = result_for(summary, "cmd")
    record(result, tmp_path / "results", tmp_path / "reliability.md")
    saved = json.loads((tmp_path / "results" / "world-model.json").read_text())
    assert saved["trials"] == summary["steps"]
    assert "Model-based test" in (tmp_path / "reliability.md").read_text()
    assert not summary["failures"], summary["failures"]

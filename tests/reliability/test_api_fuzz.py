"""Issue 21: Schemathesis's quick form against the running app (gunicorn, the test bed's
PostgreSQL), as each role, must find no 5xx, no answer that breaks the OpenAPI
description and no permission violation. The long form
(`.venv/bin/python -m tests.reliability.api_fuzz`) writes docs/reliability/api-fuzz.json;
this one records into a temporary directory."""
import pytest

from tests.reliability import api_fuzz
from tests.reliability.report import record


def test_failure_counting_reads_schemathesis_summary():
    output = ("Failures:\n  \u274c ST901 Custom check failed: `refused_unless_allowed`: 8\n"
              "  \u274c ST201 Schema-violating request accepted: 11\n\nWarnings:\n"
              "  \u26a0 Missing test data: 3\n")
    assert api_fuzz._failures(output) == {
        "ST901 Custom check failed: `refused_unless_allowed`": 8,
        "ST201 Schema-violating request accepted": 11}
    assert api_fuzz._failures("No issues found") == {}


@pytest.mark.slow
def test_quick_fuzz_of_every_role_is_clean(facility, pg_server, app_db, tmp_path,
                                           monkeypatch):
    from omero_storagemanager import settings

    # run_part points the settings at the facility; monkeypatch puts them back after,
    # so later tests see the run's own configuration (test_app_loads did not).
    for name in ("OMERO_DB", "DATA_DIR", "MANAGED_DIR", "VAR_DIR"):
        monkeypatch.setattr(settings, name, getattr(settings, name))
    result = api_fuzz.run_part(facility, pg_server, tmp_path, quick=True)
    assert [row[0] for row in result["rows"]] == ["member", "group_owner", "restricted_admin",
                                                  "admin", "guest", "anonymous"]
    for role, requests, server_errors, schema, permission, _ in result["rows"]:
        assert requests >= 100, (role, requests)
        assert (server_errors, schema, permission) == (0, 0, 0), role
    assert result["violations"] == []
    assert record(result, tmp_path / "r", tmp_path / "page.md")["violations"] == 0

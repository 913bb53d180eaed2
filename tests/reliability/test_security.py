"""Issue 7, security: a quick version of tests/reliability/security.py must find no way
through (permission matrix subset, CSRF on every URL, forged admin claims on every admin
URL, hostile strings on every GET endpoint and CLI argument) and no secret anywhere. The
full run (`.venv/bin/python -m tests.reliability.security`) writes
docs/reliability/security.json; this one records into a temporary directory."""
import json

import pytest

from tests.reliability import security
from tests.reliability.report import record


def test_the_secret_counter_finds_a_planted_secret():
    """A counter that never fires proves nothing."""
    planted = {"logs": ["nothing here", "password=" + security.SECRETS["SMTP password"]],
               "pages": ["<p>ok</p>"]}
    counts = security.count_secrets(planted)
    assert counts["logs"] == (2, {**{k: 0 for k in security.SECRETS}, "SMTP password": 1})
    assert sum(counts["pages"][1].values()) == 0


def test_every_url_and_query_parameter_is_enumerated():
    templates = [t for _, t, _ in security.url_patterns()]
    assert "/storagemanager/api/v1/admin/locations/{pk}/{action}/" in templates
    assert "/storagemanager/api/v1/collections/{key}/" in templates
    assert len(templates) >= 30
    assert {"q", "rule", "sort", "kind", "page", "per_page", "state", "file", "objects"} <= \
        set(security.query_parameters())


def test_a_refusal_with_sql_in_it_is_not_clear():
    class R:
        def __init__(self, body):
            self.content = json.dumps(body).encode()

    assert security.clear_refusal(R({"error": "page must be a whole number"}))[0]
    assert not security.clear_refusal(R({"error": 'syntax error at or near "OR"'}))[0]
    assert not security.clear_refusal(R({"items": []}))[0]


@pytest.mark.slow
def test_quick_security_finds_no_way_through(facility, pg_server, app_db, tmp_path):
    figures = security.run_part(facility, pg_server, tmp_path, quick=True)
    matrix, failures = figures["matrix"]
    assert failures == []
    assert sum(n for n, _, _ in matrix.values()) >= 10  # the subset ran
    assert figures["csrf"]["violations"] == []
    assert figures["csrf"]["refused"] == figures["csrf"]["trials"] >= 30
    assert figures["forged"]["violations"] == [] and figures["forged"]["patterns"] >= 12
    inj = figures["injection"]
    assert inj["violations"] == [] and inj["unclear"] == [] and inj["cli_violations"] == []
    assert inj["changed"] == [] and 500 not in inj["statuses"] and inj["trials"] > 200
    sec = figures["secrets"]
    assert {s: sum(h.values()) for s, (_, h) in sec["counts"].items() if sum(h.values())} == {}
    assert sec["positive"]["SMTP logins with the SMTP password"] >= 1
    assert sec["positive"]["e-mails received"] >= 1
    assert sec["positive"]["failed job mentions the database"] == 1
    assert sec["notes"] == []
    result = security.result_for(figures, "quick")
    assert result["violations"] == []
    assert record(result, tmp_path / "r", tmp_path / "page.md")["violations"] == 0

"""The reliability page is rendered from recorded parts, and refuses malformed ones."""
import json

import pytest

from tests.reliability.report import record, render


def _part(name, order, lost=0, violations=()):
    return {"part": name, "order": order, "title": f"Part {name}", "command": f"run {name}",
            "intro": "What a trial does.", "trials": 3, "lost": lost,
            "columns": ["class", "trials", "lost"], "rows": [[f"{name} a|b", 3, lost]],
            "violations": list(violations)}


def test_parts_render_in_order_with_totals(tmp_path):
    results, page = tmp_path / "r", tmp_path / "reliability.md"
    record(_part("zeta", 1), results, page)
    total = record(_part("alpha", 2, lost=1, violations=["trial 2 lost x"]), results, page)
    assert total == {"trials": 6, "lost": 1, "violations": 1}
    text = page.read_text()
    assert text.index("## Part zeta") < text.index("## Part alpha")  # order, not name
    assert "| **all** | 6 | 1 | 1 | |" in text
    assert "zeta a\\|b" in text  # a pipe in a cell does not break the table
    assert "- trial 2 lost x" in text and "Reproduce: `run alpha`" in text
    assert json.loads((results / "alpha.json").read_text())["machine"].startswith("nproc")
    assert render(results, page) == total  # re-rendering alone gives the same page
    assert page.read_text() == text


@pytest.mark.parametrize("broken", [
    lambda p: p.pop("lost"),
    lambda p: p["rows"].append(["short row"]),
])
def test_a_malformed_part_is_refused_and_writes_nothing(tmp_path, broken):
    part = _part("bad", 1)
    broken(part)
    with pytest.raises(ValueError):
        record(part, tmp_path / "r", tmp_path / "page.md")
    assert not (tmp_path / "r" / "bad.json").exists() and not (tmp_path / "page.md").exists()

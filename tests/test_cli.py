"""The admin's command line: `omero-storagemanager check` with OMERO.web's settings."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.omerodir import write_config

REPO = Path(__file__).resolve().parent.parent
CLI = shutil.which("omero-storagemanager", path=os.path.dirname(sys.executable))


def run_cli(*args, omerodir=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if omerodir is None:
        env.pop("OMERODIR", None)
    else:
        env["OMERODIR"] = str(omerodir)
    assert CLI, "console script omero-storagemanager not installed: run scripts/dev-env.sh"
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_check_passes_on_the_test_bed(omerodir):
    proc = run_cli("check", omerodir=omerodir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 5, proc.stdout
    assert any("OMERO database" in line for line in lines)
    assert any("app database: migrated" in line for line in lines)
    [tools] = [line for line in lines if "backup tools" in line]
    assert "pg_dump (PostgreSQL 18) for server 18" in tools, tools


def test_check_fails_clearly_on_a_bad_configuration(tmp_path, pg_server):
    write_config(tmp_path, {
        "omero.web.apps": ["omero_storagemanager"],
        "omero.web.databases": {"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": "omeroweb_app",
            "HOST": pg_server.host, "PORT": str(pg_server.port), "USER": "postgres"}},
        "omero.web.storagemanager.omero_db": {"host": "127.0.0.1", "port": 1, "name": "omero"},
        "omero.web.storagemanager.data_dir": str(tmp_path / "no-such-dir"),
    })
    proc = run_cli("check", omerodir=tmp_path)
    assert proc.returncode == 1
    assert "FAIL OMERO database" in proc.stdout, proc.stdout
    assert "127.0.0.1:1/omero unreachable" in proc.stdout, proc.stdout
    assert "FAIL data_dir" in proc.stdout
    assert "FAIL backup tools" in proc.stdout  # no app database to compare with
    assert "check found problems" in proc.stderr


def test_cli_without_omerodir_says_what_to_set():
    proc = run_cli("check")
    assert proc.returncode == 2
    assert "OMERODIR is not set" in proc.stderr


# -- scan, inventory, stats on a generated facility -------------------------------------

def facility_omerodir(tmp_path, pg_server, facility):
    """An OMERODIR like the test bed's, but reading this module's facility."""
    from testbed.omerodir import django_db, web_config

    write_config(tmp_path, web_config(
        app_db=django_db(pg_server, "omeroweb_app"),
        omero_db={"dsn": facility.dsn},
        data_dir=facility.truth.data_dir, managed_dir=facility.truth.managed_dir))
    return tmp_path


def test_scan_all_then_stats_json(tmp_path, pg_server, facility, app_db):
    import json

    omerodir = facility_omerodir(tmp_path, pg_server, facility)
    proc = run_cli("scan", "--all", omerodir=omerodir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = len(facility.truth.collections)
    assert f"catalog scan of {n} collections" in proc.stdout
    assert "done:" in proc.stderr  # plain progress lines when not on a terminal
    proc = run_cli("stats", "--json", omerodir=omerodir)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert sum(u["collections"] for u in stats["users"]) == n
    assert {"id", "name", "online_bytes", "archived_bytes", "purged_bytes", "quota_bytes",
            "over_quota"} <= set(stats["groups"][0])


def test_inventory_json_lists_the_collection_files(tmp_path, pg_server, facility, app_db):
    import json

    omerodir = facility_omerodir(tmp_path, pg_server, facility)
    key, col = next((k, c) for k, c in facility.truth.collections.items()
                    if any(f["shared_with"] for f in c["files"]))
    proc = run_cli("inventory", key, "--json", omerodir=omerodir)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["collection"] == key and data["mode"] == "stat"
    assert sorted(f["path"] for f in data["files"]) == sorted(f["path"] for f in col["files"])
    assert data["figures"]["files"] == len(col["files"])
    shared = {f["path"]: f["shared_with"] for f in data["files"] if f["shared_with"]}
    assert shared == {f["path"]: f["shared_with"] for f in col["files"] if f["shared_with"]}


def test_scan_errors_are_one_clear_line_and_non_zero(tmp_path, pg_server, facility, app_db):
    omerodir = facility_omerodir(tmp_path, pg_server, facility)
    proc = run_cli("scan", "Project:987654", omerodir=omerodir)
    assert proc.returncode != 0
    assert "Project:987654" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("inventory", "Dataset:1", omerodir=omerodir)
    assert proc.returncode != 0 and "Project:<id> or Screen:<id>" in proc.stderr
    assert "Traceback" not in proc.stderr
    # The repository is not mounted.
    write_config(omerodir, {"omero.web.storagemanager.data_dir": str(tmp_path / "gone"),
                            "omero.web.storagemanager.managed_dir": str(tmp_path / "gone/MR")})
    proc = run_cli("scan", "--all", "--mode", "stat", omerodir=omerodir)
    assert proc.returncode != 0 and "not readable" in proc.stderr
    assert "Traceback" not in proc.stderr
    # The OMERO database is unreachable.
    write_config(omerodir, {"omero.web.storagemanager.omero_db":
                            {"host": "127.0.0.1", "port": 1, "name": "omero"}})
    proc = run_cli("scan", "--all", omerodir=omerodir)
    assert proc.returncode != 0 and "unreachable" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# -- no OMERO server -------------------------------------------------------------------------

def ice_refusing_gateway():
    """A gateway_factory standing for omero-py when OMERO.server is down: the Ice
    exception its BlitzGateway.connect() raises (Ice's message spans two lines)."""
    import Ice

    raise Ice.ConnectionRefusedException(111)


def test_without_an_omero_server_each_verb_says_so_in_one_line(tmp_path, pg_server,
                                                              facility, app_db):
    """The verbs that change OMERO (purge, restore) need OMERO.server: without one, one
    line on stderr naming it and a non-zero exit, never a traceback nor Ice's own
    messages."""
    omerodir = facility_omerodir(tmp_path, pg_server, facility)
    key = next(iter(facility.truth.collections))
    cases = [
        # The default factory: the service account against a port where nothing listens.
        ({"omero.web.storagemanager.gateway_factory":
          "omero_storagemanager.gateway.blitz.service_gateway",
          "omero.web.storagemanager.service_user": "root",
          "omero.web.storagemanager.service_password": "secret",
          "omero.web.server_list": [["127.0.0.1", 1, "omero"]]},
         "cannot reach OMERO.server 127.0.0.1:1 (ConnectionRefusedException: Connection refused)"),
        # No service account configured.
        ({"omero.web.storagemanager.service_user": ""},
         "no OMERO service account: set omero.web.storagemanager.service_user"),
        # omero-py raising Ice's exception.
        ({"omero.web.storagemanager.gateway_factory": "tests.test_cli.ice_refusing_gateway"},
         "cannot reach OMERO.server 127.0.0.1:1 (ConnectionRefusedException: Connection refused)"),
    ]
    for config, says in cases:
        write_config(omerodir, config)
        for verb in (["purge", key], ["restore", key]):
            proc = run_cli(*verb, omerodir=omerodir)
            err = proc.stderr.strip()
            assert proc.returncode not in (0, None), (verb, proc.stdout + proc.stderr)
            assert len(err.splitlines()) == 1, (verb, err)
            assert err == f"CommandError: {says}" or err.startswith(f"CommandError: {says} "), \
                (verb, err)
            assert "secret" not in err + proc.stdout


def _omero_errors():
    import Ice
    import omero
    import omero.gateway  # noqa: F401 (defines omero.SecurityViolation & co)

    from omero_storagemanager.gateway import GatewayError

    trace = "ome.conditions.SecurityViolation: Bad password\n\tat ome.x.y(Z.java:1)"
    return [
        (Ice.ConnectionLostException(104),
         "cannot reach OMERO.server {server} (ConnectionLostException: Connection reset by peer)"),
        (Ice.DNSException(0, "no.such.host"),
         "cannot reach OMERO.server {server} (DNSException: error = 0; host = no.such.host)"),
        (omero.SecurityViolation(trace, "ome.conditions.SecurityViolation", "Bad password"),
         "OMERO.server {server} refused: SecurityViolation: Bad password"),
        (GatewayError("Project:1 not found or not visible"), "Project:1 not found or not visible"),
    ]


def test_omero_server_errors_during_a_verb_are_one_line(monkeypatch):
    """Whatever omero-py raises while a verb runs (the server going away mid-run, a
    refusal) is one line naming OMERO.server; Ice's and OMERO's exceptions span several
    (fields, the server's Java stack trace)."""
    from types import SimpleNamespace

    from django.core.management.base import CommandError

    from omero_storagemanager import settings
    from omero_storagemanager.management.commands import storagemanager

    server = "{}:{}".format(*settings.omero_server())
    for raised, says in _omero_errors():
        def run(command, options):
            raise raised

        monkeypatch.setattr(storagemanager, "_verb", lambda name: SimpleNamespace(run=run))
        with pytest.raises(CommandError) as failure:
            storagemanager.Command().handle(verb="restore")
        assert str(failure.value) == says.format(server=server)
        assert failure.value.__cause__ is raised  # --traceback shows where it came from

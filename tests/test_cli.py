"""The admin's command line: `omero-storagemanager check` with OMERO.web's settings."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    assert [line.split()[0] for line in lines] == ["ok"] * 4, proc.stdout
    assert any("OMERO database" in line for line in lines)
    assert any("app database: migrated" in line for line in lines)


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

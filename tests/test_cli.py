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

"""The README's demo: a real OMERO.web (gunicorn, omeroweb.wsgi) with the app, from nothing.

Runs the demo in --check mode: it sets everything up, starts the django-q2 cluster and
OMERO.web on a free port, signs in as an admin through /demo/ (CSRF and all), fetches
the Storage page, and stops everything.
"""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from testbed.pg import free_port

REPO = Path(__file__).resolve().parent.parent


def test_demo_serves_the_storage_page_and_stops_cleanly(tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for key in ("DJANGO_SETTINGS_MODULE", "OMERODIR"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "testbed.demo", "--check", "--port", str(port),
         "--dir", str(tmp_path / "demo")],
        env=env, cwd=str(REPO), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert f"http://127.0.0.1:{port}/storagemanager/" in out
    assert "check: /storagemanager/ answered 200" in out
    assert "alice" in out  # the demo users are listed
    assert "archive location 'Demo S3 bucket'" in out  # an S3 location beside the disk
    # Everything it started is gone: the port is free again and no server is left.
    time.sleep(0.5)
    import socket
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "OMERO.web still listening"
    assert not (tmp_path / "demo" / "pg" / "data" / "postmaster.pid").exists()
    s3_port = int(re.search(r"S3 server \(SeaweedFS\) at http://127.0.0.1:(\d+)", out).group(1))
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", s3_port)) != 0, "the S3 server still listening"
    assert "check: django-q2 cluster ran a task: math.floor(2.5) = 2" in out
    # Its nightly backup works: the embedded server's own pg_dump, a dump only its user reads.
    assert "nightly backup of the app database at 02:00" in out
    assert "check: backup job done, dump mode 0o600" in out

"""The example client of docs/api.md, run as written (the block is read from the page, so
the page cannot drift): against the app served over HTTP by Django's live server thread
(the real URLs, middleware and CSRF), signed in as an owner, it lists the collections,
asks for an archive and follows the job, which the job runner the workers call runs.
"""
import re
import subprocess
import sys
import threading
from pathlib import Path

from django.test.testcases import LiveServerThread, _StaticFilesHandler

from omero_storagemanager import preferences
from omero_storagemanager.models import Job
from omero_storagemanager.tasks.runner import run_job
from tests.api_support import (Api, disk_location, point_app_at, standin_middleware, sync,
                               user_ids)

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def example_client():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    [client] = [b for b in blocks if "def call(" in b]
    assert len(client.splitlines()) <= 50, "the example should stay about 40 lines"
    return client


def test_the_example_client_lists_asks_for_an_archive_and_follows_the_job(
        facility, app_db, monkeypatch, tmp_path):
    point_app_at(facility, monkeypatch, tmp_path)
    sync(facility)
    ids = user_ids(facility)
    disk_location(tmp_path / "archive")  # the current location the archive goes to
    preferences.set_many({"require_approval": False})  # chloe archives hers at once
    script = tmp_path / "client.py"
    script.write_text(example_client())
    with standin_middleware():
        session = Api(ids["chloe"]).client.cookies["sessionid"].value
        server = LiveServerThread("127.0.0.1", _StaticFilesHandler, port=0)
        server.daemon = True
        server.start()
        server.is_ready.wait()
        assert server.error is None, server.error
        stop = threading.Event()
        runner = threading.Thread(target=_run_jobs, args=(stop,), daemon=True)
        runner.start()
        try:
            proc = subprocess.run([sys.executable, str(script),
                                   f"http://127.0.0.1:{server.port}", session],
                                  capture_output=True, text=True, timeout=600)
        finally:
            stop.set()
            runner.join(30)
            server.terminate()
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("Project:4 ") for line in lines), proc.stdout
    assert "202 archive" in proc.stdout, proc.stdout
    job = Job.objects.get(kind="archive")
    [key] = [c.key for c in job.collections.all()]
    assert f"202 archive {key} " in proc.stdout, proc.stdout
    assert job.state == Job.DONE, (job.state, job.error)
    assert f"job {job.pk} done 1.0" in proc.stdout


def _run_jobs(stop):
    """What a django-q2 worker does with each queued job: tasks.runner.run_job."""
    from django.db import connection

    try:
        while not stop.wait(0.2):
            for pk in Job.objects.filter(state=Job.QUEUED).values_list("pk", flat=True):
                run_job(pk)
    finally:
        connection.close()

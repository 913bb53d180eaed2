"""`omero-storagemanager diagnose` (issue 20, manual 9): one support bundle with versions,
settings, job and worker states, a thread dump of each worker and recent log lines, and
no secret in it. A real django-q2 cluster whose configuration holds secrets everywhere
they can be (service password, database passwords, mail password, Django's secret key),
one of them leaked into a job log on purpose.
"""
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from omero_storagemanager.models import Job
from omero_storagemanager.tasks import queue
from testbed.omerodir import write_config
from tests.test_cli import run_cli
from tests.test_jobs import Cluster, cluster_config, wait_job

SECRETS = {
    "omero.web.storagemanager.service_password": "Svc-pa55word-XYZ",
    "omero.mail.password": "Mail-pa55word-XYZ",
    "omero.db.pass": "OmeroDb-pa55word-XYZ",
}
APP_DB_PASSWORD = "AppDb-pa55word-XYZ"  # the test server trusts local connections


@pytest.fixture
def secret_cluster(pg_server, facility, tmp_path, app_db):
    config = cluster_config(pg_server, facility, tmp_path / "var", 25)
    config.update(SECRETS)
    config["omero.web.databases"]["default"]["PASSWORD"] = APP_DB_PASSWORD
    config["omero.mail.username"] = "mailer"
    write_config(tmp_path / "omerodir", config)
    running = Cluster(tmp_path / "omerodir", tmp_path / "qcluster.log")
    yield tmp_path / "omerodir"
    running.stop()
    Job.objects.filter(state__in=Job.ACTIVE).update(state=Job.CANCELLED, cancel_requested=True)


def test_the_support_bundle_has_what_support_needs_and_no_secret(secret_cluster, tmp_path):
    job = wait_job(queue.submit("sync"))  # a worker runs a job: it can dump its threads
    assert job.state == Job.DONE, job.error
    with open(Path(job.log_dir, "job.log"), "a") as log:  # a careless log line
        log.write(f"connecting with password {SECRETS['omero.web.storagemanager.service_password']}\n")
    django_key = Path(os.environ["OMERODIR"], "var", "django_secret_key").read_text().strip()

    out = tmp_path / "bundle.tar.gz"
    proc = run_cli("diagnose", "--output", str(out), omerodir=secret_cluster)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"support bundle: {out}" in proc.stdout
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600

    with tarfile.open(out) as bundle:
        files = {m.name.split("/", 1)[1]: bundle.extractfile(m).read().decode("utf-8")
                 for m in bundle.getmembers() if m.isfile()}
    for name in ("versions.json", "settings.json", "jobs.json", "workers.json"):
        assert name in files, sorted(files)
    versions = json.loads(files["versions.json"])
    assert versions["django"] and versions["omeroweb"] and "PostgreSQL" in versions["app_database"]
    settings = json.loads(files["settings.json"])
    assert settings["storagemanager"]["omero.web.storagemanager.service_password"] == "***"
    assert settings["django"]["DATABASES"]["default"]["PASSWORD"] == "***"
    assert settings["storagemanager"]["omero.web.storagemanager.heartbeat_timeout"] == 15
    jobs = json.loads(files["jobs.json"])
    assert jobs["counts"].get("sync done", 0) >= 1
    threads = {n: t for n, t in files.items() if n.startswith("threads/")}
    worker_pid = job.worker.rsplit(":", 1)[1]
    assert f"threads/{worker_pid}.txt" in threads, sorted(files)
    assert "Thread 0x" in threads[f"threads/{worker_pid}.txt"]
    assert any(n == f"logs/job-{job.pk}-job.log" for n in files), sorted(files)
    assert "connecting with password ***" in files[f"logs/job-{job.pk}-job.log"]

    everything = "\n".join(files.values())
    for secret in [*SECRETS.values(), APP_DB_PASSWORD, django_key]:
        assert secret not in everything, f"secret {secret[:6]}... in the bundle"

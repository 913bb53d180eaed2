"""Jobs on a real django-q2 cluster (`manage.py qcluster`, not sync mode).

The cluster runs in its own processes with OMERO.web's settings built from an OMERODIR
that points at this module's generated facility and the run's app database; the test
process submits jobs and watches the Job rows, as the web pages will.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bagit
import psycopg2
import pytest
from django.db import connection

import omeroweb
from omero_storagemanager import settings
from omero_storagemanager.catalog.collections import parse_key
from omero_storagemanager.engine.locations import add_location
from omero_storagemanager.engine.sync import sync_collections
from omero_storagemanager.models import Collection, Copy, CopyFile, Job
from omero_storagemanager.tasks import queue
from omero_storagemanager.tasks.monitor import monitor
from omero_storagemanager.tasks.schedules import get_schedules, next_run, set_schedule
from testbed.omerodir import django_db, q_cluster, web_config, write_config
from testbed.pg import free_port

REPO = Path(__file__).resolve().parent.parent
MANAGE = str(Path(omeroweb.__file__).parent / "manage.py")


def cluster_env(omerodir):
    env = dict(os.environ, OMERODIR=str(omerodir), DJANGO_SETTINGS_MODULE="omeroweb.settings",
               PYTHONPATH=str(REPO))
    return env


def cluster_config(pg_server, facility, var_dir, smtp_port, broker=None):
    cluster = dict(q_cluster(), timeout=20, retry=25, workers=2, poll=0.2)
    if broker:
        cluster.update(broker)
        cluster.pop("orm", None)
    return web_config(
        app_db=django_db(pg_server, "omeroweb_app"), omero_db={"dsn": facility.dsn},
        data_dir=facility.truth.data_dir, managed_dir=facility.truth.managed_dir,
        var_dir=var_dir, extra={
            "omero.web.django_additional_settings": [["Q_CLUSTER", cluster]],
            "omero.web.storagemanager.heartbeat_timeout": "15",
            "omero.web.storagemanager.wait_recheck": "2",
            "omero.web.storagemanager.copy_workers": "1",
            "omero.web.storagemanager.admin_emails": ["storage-admin@example.org"],
            "omero.mail.host": "127.0.0.1",
            "omero.mail.port": str(smtp_port),
            "omero.mail.from": "omero@example.org",
            "omero.web.storagemanager.pg_bin_dir": str(pg_server.bindir),
        })


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free port, keeping what it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                mailbox.messages.append((envelope.rcpt_tos,
                                         envelope.content.decode("utf-8", "replace")))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        self.controller.stop()

    def wait_for(self, text, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.messages if text in m[1]]
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"no e-mail containing {text!r}; got "
                             f"{[m[1].splitlines()[:6] for m in self.messages]}")


def share_secret_key(omerodir):
    """Workers must have the web's Django secret key: django-q2 signs tasks with it."""
    source = Path(os.environ["OMERODIR"], "var", "django_secret_key")
    target = Path(omerodir, "var", "django_secret_key")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    target.chmod(0o600)


class Cluster:
    def __init__(self, omerodir, log):
        share_secret_key(omerodir)
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, MANAGE, "qcluster"],
                                     env=cluster_env(omerodir), cwd=str(REPO),
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def orm_cluster(pg_server, facility, tmp_path_factory, mailbox):
    """One ORM-broker cluster for the module, and the test process pointed at the
    same facility."""
    base = tmp_path_factory.mktemp("cluster")
    write_config(base / "omerodir", cluster_config(pg_server, facility, base / "var",
                                                   mailbox.port))
    saved = (settings.OMERO_DB, settings.DATA_DIR, settings.MANAGED_DIR, settings.VAR_DIR)
    settings.OMERO_DB = {"dsn": facility.dsn}
    settings.DATA_DIR, settings.MANAGED_DIR = facility.truth.data_dir, facility.truth.managed_dir
    settings.VAR_DIR = str(base / "var")
    cluster = Cluster(base / "omerodir", base / "qcluster.log")
    yield cluster
    cluster.stop()
    settings.OMERO_DB, settings.DATA_DIR, settings.MANAGED_DIR, settings.VAR_DIR = saved


@pytest.fixture
def jobs_db(app_db, facility, orm_cluster):
    """Collections synced, no jobs left from other tests; the cluster running."""
    conn = psycopg2.connect(facility.dsn)
    conn.set_session(readonly=True, autocommit=True)
    sync_collections(conn)
    yield conn
    conn.close()
    Job.objects.filter(state__in=Job.ACTIVE).update(state=Job.CANCELLED, cancel_requested=True)


def wait_job(job, states=(Job.DONE, Job.FAILED, Job.CANCELLED), timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.state in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job.pk} still {job.state} after {timeout} s "
                         f"(attempts {job.attempts}, wait {job.wait_reason!r}, error {job.error!r})")


def collection(key):
    kind, oid = parse_key(key)
    return Collection.objects.get(kind=kind, omero_id=oid)


def clean_key(facility, many=False):
    def ok(c):
        return c["files"] and not any(f["missing"] or "db_size" in f or f["symlink_target"]
                                      for f in c["files"])
    keys = [k for k, c in facility.truth.collections.items() if ok(c)]
    return max(keys, key=lambda k: len(facility.truth.collections[k]["files"])) if many \
        else keys[0]


def enlarge(facility, key, count=3000, size=4096):
    """Add `count` files to a fileset of the collection, as an import would have: files
    on disk and OMERO rows (so an archive of it takes seconds, long enough to kill)."""
    import hashlib

    template = next(f for f in facility.truth.collections[key]["files"]
                    if f["kind"] == "fileset_entry" and f["originalfile_id"])
    conn = psycopg2.connect(facility.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT max(id) FROM originalfile")
            next_file = cur.fetchone()[0] + 1
            cur.execute("SELECT max(id) FROM filesetentry")
            next_entry = cur.fetchone()[0] + 1
            cur.execute("SELECT max(fileset_index) FROM filesetentry WHERE fileset = %s",
                        [template["fileset_id"]])
            index = cur.fetchone()[0] + 1
            folder = os.path.dirname(template["path"])
            for i in range(count):
                data = os.urandom(size)
                name = f"extra field {i:05d}.tif"
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(data)
                cur.execute(
                    "INSERT INTO originalfile (id, permissions, path, name, \"size\", hash,"
                    " hasher, mimetype, repo, creation_id, group_id, owner_id, update_id,"
                    " mtime, atime, ctime) SELECT %s, permissions, path, %s, %s, %s, 6,"
                    " mimetype, repo, creation_id, group_id, owner_id, update_id, mtime,"
                    " atime, ctime FROM originalfile WHERE id = %s",
                    [next_file + i, name, size, hashlib.sha1(data).hexdigest(),
                     template["originalfile_id"]])
                cur.execute(
                    "INSERT INTO filesetentry (id, permissions, clientpath, fileset,"
                    " originalfile, fileset_index, creation_id, group_id, owner_id, update_id)"
                    " SELECT %s, permissions, clientpath || %s, fileset, %s, %s, creation_id,"
                    " group_id, owner_id, update_id FROM filesetentry WHERE originalfile = %s",
                    [next_entry + i, f".{i}", next_file + i, index + i,
                     template["originalfile_id"]])
    finally:
        conn.close()
    return count


def location(tmp_path, name="disk"):
    mount = tmp_path / name
    mount.mkdir()
    return add_location(name, "hdd", str(mount), 10**10, current=True)


def test_queued_archive_runs_with_progress_log_and_info_mail(jobs_db, facility, tmp_path,
                                                            mailbox):
    key = clean_key(facility)
    target = location(tmp_path)
    job = queue.submit("archive", [collection(key)], target, requested_by=(2, "alice"))
    job = wait_job(job)
    assert job.state == Job.DONE, job.error
    expected = len(facility.truth.collections[key]["files"])
    assert job.files_done == expected and job.attempts == 1
    assert job.started and job.finished and job.finished >= job.started
    log = Path(job.log_dir, "job.log").read_text()
    assert "attempt 1" in log and "verified copy" in log and log.rstrip().endswith("done")
    handled = Path(job.log_dir, "files.txt").read_text().splitlines()
    assert len(handled) == expected and all(line.startswith(key) for line in handled)
    assert job.summary["collections"][0]["state"] == "archived"
    [(recipients, message)] = mailbox.wait_for(f"archive done: {key}")
    users = {int(uid): u for uid, u in facility.truth.users.items()}
    owner = users[facility.truth.collections[key]["owner_id"]]
    assert "storage-admin@example.org" in recipients and owner["email"] in recipients


def test_failed_job_is_logged_and_mailed(jobs_db, facility, tmp_path, mailbox):
    key = next(k for k, c in facility.truth.collections.items()
               if any(f["missing"] for f in c["files"]))
    job = wait_job(queue.submit("archive", [collection(key)], location(tmp_path)))
    assert job.state == Job.FAILED and "missing from the repository" in job.error
    assert "missing from the repository" in Path(job.log_dir, "errors.txt").read_text()
    [(recipients, _)] = mailbox.wait_for(f"archive failed: {key}")
    assert recipients == ["storage-admin@example.org"]


def test_worker_killed_mid_archive_is_resumed_and_each_file_verified_once(
        jobs_db, facility, tmp_path):
    key = clean_key(facility, many=True)  # the plate: hundreds of files...
    added = enlarge(facility, key)  # ...and thousands more, so it takes a while
    job = queue.submit("archive", [collection(key)], location(tmp_path))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.state == Job.RUNNING and job.files_done > 200:
            break
        time.sleep(0.05)
    assert job.state == Job.RUNNING and job.files_done > 200, f"archive not under way: {job}"
    pid = int(job.worker.rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)  # the worker dies mid-copy
    job = wait_job(job, timeout=180)
    assert job.state == Job.DONE, job.error
    assert job.attempts == 2
    copy = Copy.objects.get(collection=collection(key), state=Copy.VERIFIED)
    relpaths = list(CopyFile.objects.filter(copy=copy).values_list("relpath", flat=True))
    expected = len(facility.truth.collections[key]["files"]) + added
    assert len(relpaths) == len(set(relpaths)) == expected
    bag = Path(copy.location.mount, str(copy.location_id), "write", copy.bag_path)
    bagit.Bag(str(bag)).validate()
    assert "resuming" in Path(job.log_dir, "job.log").read_text()


def test_one_job_at_a_time_per_collection_and_cancel(jobs_db, facility, tmp_path):
    key = clean_key(facility, many=True)
    target = location(tmp_path)
    first = queue.submit("archive", [collection(key)], target)
    second = queue.submit("scan", [collection(key)], params={"mode": "verify"})
    third = queue.submit("sync", dispatch_now=False)
    queue.cancel(third)
    third.refresh_from_db()
    assert third.state == Job.CANCELLED
    assert wait_job(first).state == Job.DONE
    assert wait_job(second).state == Job.DONE
    # Whichever a worker took first, they never ran at the same time on the collection.
    assert first.finished <= second.started or second.finished <= first.started
    third.refresh_from_db()
    assert third.state == Job.CANCELLED and third.attempts == 0


def test_monitor_resumes_dead_workers_and_rechecks_waiting_jobs(app_db):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    dead = Job.objects.create(kind="sync", state=Job.RUNNING, worker="gone:1",
                              heartbeat=now - timedelta(seconds=settings.HEARTBEAT_TIMEOUT + 1))
    alive = Job.objects.create(kind="scan", state=Job.RUNNING, worker="here:2", heartbeat=now)
    waiting = Job.objects.create(kind="restore", state=Job.WAITING,
                                 next_check=now - timedelta(seconds=1))
    later = Job.objects.create(kind="audit", state=Job.WAITING, next_check=now + timedelta(hours=1))
    result = monitor(now=now)
    assert result["resumed"] == [dead.pk]
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.state == Job.QUEUED and "stopped answering" in dead.wait_reason
    assert alive.state == Job.RUNNING
    assert waiting.pk in result["dispatched"] and later.pk not in result["dispatched"]
    Job.objects.all().update(state=Job.CANCELLED, cancel_requested=True)


def test_a_job_whose_app_database_connection_breaks_is_queued_again(app_db, monkeypatch):
    """The app database restarting under a job is not the job's failure: it is queued
    again and resumes; an error on a working connection still fails the job."""
    import psycopg2
    from django.db import connection

    from omero_storagemanager.tasks import runner

    calls = []

    def handler(job, handle):
        calls.append(job.attempts)
        if len(calls) == 1:  # the first attempt: the server ends our session
            pid = connection.connection.info.backend_pid
            params = connection.get_connection_params()
            killer = psycopg2.connect(**{k: v for k, v in params.items()
                                         if k in ("host", "port", "dbname", "user", "password")})
            with killer, killer.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", [pid])
            killer.close()
            Job.objects.count()  # the next query finds the connection gone
        if len(calls) == 3:
            Job.objects.raw("SELECT no_such_column FROM storagemanager_job")[0]
        return {"attempt": job.attempts}

    monkeypatch.setitem(runner.HANDLERS, "sync", handler)
    job = queue.submit("sync", dispatch_now=False)
    assert runner.run_job(job.pk) == Job.QUEUED
    job.refresh_from_db()
    assert job.state == Job.QUEUED and "connection lost" in job.wait_reason
    assert runner.run_job(job.pk) == Job.DONE  # resumed on a fresh connection
    job.refresh_from_db()
    assert job.state == Job.DONE and job.attempts == 2 and calls == [1, 2]
    other = queue.submit("sync", dispatch_now=False)
    assert runner.run_job(other.pk) == Job.FAILED  # a bad query is a failure, not a loss
    other.refresh_from_db()
    assert "no_such_column" in other.error


def test_schedules_fire_at_their_time(jobs_db):
    from datetime import datetime, timezone as tz

    from django.utils import timezone
    from django_q.brokers import get_broker
    from django_q.models import Schedule
    from django_q.scheduler import scheduler

    injected = timezone.make_aware(datetime(2026, 3, 1, 11, 30))
    assert set_schedule("quota_check", "12:00, 00:00", now=injected) == ["00:00", "12:00"]
    entry = get_schedules()["quota_check"]
    assert entry["times"] == ["00:00", "12:00"]
    assert timezone.localtime(entry["next_run"]).strftime("%Y-%m-%d %H:%M") == "2026-03-01 12:00"
    assert next_run("00:00", injected).strftime("%Y-%m-%d %H:%M") == "2026-03-02 00:00"
    # 12:00 comes: django-q2's own scheduler finds the schedule due and queues it.
    Schedule.objects.filter(name="storagemanager:quota_check@12:00").update(
        next_run=datetime.now(tz.utc))
    before = set(Job.objects.filter(kind="quota_check").values_list("pk", flat=True))
    scheduler(broker=get_broker())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = Job.objects.filter(kind="quota_check").exclude(pk__in=before).first()
        if new is not None:
            break
        time.sleep(0.2)
    assert new is not None, "the schedule did not submit a quota_check job"
    assert wait_job(new).state == Job.DONE
    fired = Schedule.objects.get(name="storagemanager:quota_check@12:00")
    assert fired.next_run > datetime.now(tz.utc)  # rescheduled for tomorrow
    set_schedule("quota_check", "")
    assert get_schedules()["quota_check"]["times"] == []


def test_backup_restores_to_an_identical_database(jobs_db, facility, tmp_path):
    from omero_storagemanager.engine.backup import list_backups, restore_backup, run_backup

    def snapshot():
        with connection.cursor() as cur:
            rows = {}
            for table in ("storagemanager_collection", "storagemanager_location",
                          "storagemanager_job"):
                cur.execute(f"SELECT * FROM {table} ORDER BY id")
                rows[table] = cur.fetchall()
            return rows

    location(tmp_path)
    saved = (settings.PG_BIN_DIR, settings.BACKUPS_KEPT)
    from testbed.fixtures import _state

    settings.PG_BIN_DIR, settings.BACKUPS_KEPT = str(_state["server"].bindir), 2
    try:
        before = snapshot()
        for _ in range(3):
            run_backup()
        assert [b.name for b in list_backups()] == ["current", "0", "1"]
        Collection.objects.all().update(name="changed after the backup")
        Job.objects.create(kind="sync")
        assert snapshot() != before
        restore_backup("current")
        assert snapshot() == before
    finally:
        settings.PG_BIN_DIR, settings.BACKUPS_KEPT = saved


def test_two_clusters_on_redis_share_jobs_without_doing_any_twice(
        pg_server, facility, tmp_path, app_db, mailbox):
    import shutil

    server = shutil.which("redis-server")
    assert server, "redis-server is missing: apt-get install redis-server (scripts/system-deps.sh)"
    port = free_port()
    redis = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    clusters = []
    try:
        config = cluster_config(pg_server, facility, tmp_path / "var", mailbox.port,
                                broker={"redis": {"host": "127.0.0.1", "port": port, "db": 0},
                                        "name": "storagemanager-redis"})
        config["omero.web.storagemanager.concurrency"] = {"scan": 4}
        write_config(tmp_path / "omerodir", config)
        for i in range(2):
            clusters.append(Cluster(tmp_path / "omerodir", tmp_path / f"cluster{i}.log"))
        keys = list(facility.truth.collections)
        cli = str(Path(sys.executable).parent / "omero-storagemanager")
        for key in keys:
            proc = subprocess.run([cli, "jobs", "submit", "scan", key, "--mode", "stat"],
                                  env=cluster_env(tmp_path / "omerodir"),
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
        jobs = list(Job.objects.filter(kind="scan").order_by("pk"))
        assert len(jobs) == len(keys)
        for job in jobs:
            assert wait_job(job, timeout=120).state == Job.DONE, job.error
        groups = set()
        for job in jobs:
            job.refresh_from_db()
            log = Path(job.log_dir, "job.log").read_text()
            assert job.attempts == 1 and log.count("attempt ") == 1  # each done exactly once
            groups.add(os.getpgid(int(job.worker.rsplit(":", 1)[1])))  # which cluster
        assert groups == {c.proc.pid for c in clusters}, "both clusters should take jobs"
    finally:
        for cluster in clusters:
            cluster.stop()
        redis.terminate()
        redis.wait(10)

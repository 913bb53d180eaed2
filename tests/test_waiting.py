"""Waiting is a state, not a failure (issue 20), on a real django-q2 cluster and a real
SMTP server (aiosmtpd).

A restore waits for a disconnected disk. The test plays the monitor: it calls
`monitor(now)` itself, with the real clock for rechecks (the cluster's workers compare
with theirs) and a clock it moves forward for reminders, so a day passes in a call.
"""
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import pytest

from omero_storagemanager import settings
from omero_storagemanager.catalog.paths import RepositoryPaths
from omero_storagemanager.engine.archive import archive_collection
from omero_storagemanager.engine.purge import purge_collection
from omero_storagemanager.models import Collection, Job
from omero_storagemanager.tasks import queue, waiting
from omero_storagemanager.tasks.monitor import monitor
from testbed.omerodir import write_config
from testbed.standin import StandInGateway
from tests.api_support import Api, data, standin_middleware, user_ids
from tests.test_jobs import (Cluster, Mailbox, clean_key, cluster_config, collection,
                             location, wait_job)

API = "/storagemanager/api/v1/"
MAX_ATTEMPTS = 2  # far fewer than the rechecks a wait makes below


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def cluster(pg_server, facility, tmp_path_factory, mailbox):
    base = tmp_path_factory.mktemp("waitcluster")
    config = cluster_config(pg_server, facility, base / "var", mailbox.port)
    config["omero.web.storagemanager.max_attempts"] = str(MAX_ATTEMPTS)
    config["omero.web.storagemanager.wait_recheck"] = "1"
    write_config(base / "omerodir", config)
    saved = (settings.OMERO_DB, settings.DATA_DIR, settings.MANAGED_DIR, settings.VAR_DIR,
             settings.MAX_ATTEMPTS, settings.WAIT_RECHECK)
    settings.OMERO_DB = {"dsn": facility.dsn}
    settings.DATA_DIR, settings.MANAGED_DIR = facility.truth.data_dir, facility.truth.managed_dir
    settings.VAR_DIR = str(base / "var")
    settings.MAX_ATTEMPTS, settings.WAIT_RECHECK = MAX_ATTEMPTS, 1
    running = Cluster(base / "omerodir", base / "qcluster.log")
    yield running
    running.stop()
    (settings.OMERO_DB, settings.DATA_DIR, settings.MANAGED_DIR, settings.VAR_DIR,
     settings.MAX_ATTEMPTS, settings.WAIT_RECHECK) = saved


@pytest.fixture
def catalog(app_db, facility, cluster, mailbox):
    """The cluster's facility synced; this process (which sends the reminders when it
    plays the monitor) mails to the same SMTP server and admins as the cluster."""
    from django.test import override_settings

    from omero_storagemanager import preferences
    from omero_storagemanager.engine.sync import sync_collections

    preferences.set_many({"admin_emails": ["storage-admin@example.org"]})
    mail = override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=mailbox.port,
                             SERVER_EMAIL="omero@example.org")
    mail.enable()

    conn = psycopg2.connect(facility.dsn)
    conn.set_session(readonly=True, autocommit=True)
    sync_collections(conn)
    yield conn
    mail.disable()
    conn.close()
    Job.objects.filter(state__in=Job.ACTIVE).update(state=Job.CANCELLED, cancel_requested=True)


def archived_and_purged(conn, facility, key, target):
    paths = RepositoryPaths(facility.truth.data_dir, facility.truth.managed_dir)
    gateway = StandInGateway(facility.dsn, 0)
    archive_collection(conn, paths, collection(key), target, log=lambda _: None)
    purge_collection(conn, paths, collection(key), gateway, log=lambda _: None)
    assert collection(key).state == Collection.PURGED


def wait_state(job, state, timeout=60):
    return wait_job(job, states=(state,), timeout=timeout)


def mails(mailbox, text):
    return [m for m in mailbox.messages if text in m[1]]


def test_busy_waits_ask_nobody_and_reminders_wait_their_interval(app_db):
    """Unit level, with a test clock: a wait for another job sends no question and no
    reminder; a wait for a person is reminded once per interval, never more often."""
    from omero_storagemanager.engine.locks import CollectionBusy

    now = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
    busy = Job.objects.create(kind="archive", state=Job.RUNNING)
    rows = []

    def finish(job, state, **fields):
        rows.append((state, fields))
        Job.objects.filter(pk=job.pk).update(state=state, **fields)

    waiting.enter(busy, CollectionBusy("Project:1: another archive of it is running"),
                  finish, now=now)
    busy.refresh_from_db()
    assert busy.wait_kind == "busy" and busy.wait_reminded is None
    assert waiting.remind(now + timedelta(days=30)) == []

    disk = Job.objects.create(kind="restore", state=Job.RUNNING, attempts=1)
    from omero_storagemanager.engine.restore import RestoreWaiting, WaitReason

    reason = WaitReason("connect archive disk 'D' (id 9): /mnt/d/9 is missing", "medium",
                        "waiting for archive disk 'D' to be connected")
    waiting.enter(disk, RestoreWaiting([reason]), finish, now=now)
    disk.refresh_from_db()
    assert disk.attempts == 0 and disk.wait_since == now and disk.wait_reminded == now
    assert waiting.public_reason(disk, admin=False) == "waiting for archive disk 'D' to be connected"
    assert "/mnt/d/9" in waiting.public_reason(disk, admin=True)
    step = timedelta(seconds=settings.WAIT_REMINDER)
    sent = [t for t in (now + step * k / 4 for k in range(1, 13)) if waiting.remind(t)]
    assert sent == [now + step, now + 2 * step, now + 3 * step]
    # A recheck that still waits for the same thing keeps the wait's start and e-mail time.
    Job.objects.filter(pk=disk.pk).update(state=Job.RUNNING)
    disk.refresh_from_db()
    waiting.enter(disk, RestoreWaiting([reason]), finish, now=now + 4 * step)
    disk.refresh_from_db()
    assert disk.wait_since == now and disk.wait_reminded == now + 3 * step


def test_a_restore_waits_for_a_disk_for_days_without_failing_then_finishes(
        catalog, facility, tmp_path, mailbox):
    key = clean_key(facility)
    disk = location(tmp_path, name="USB 4")
    archived_and_purged(catalog, facility, key, disk)
    id_dir = Path(disk.mount, str(disk.pk))
    os.rename(id_dir, str(id_dir) + ".away")  # the disk goes back on the shelf
    owner = facility.truth.collections[key]["owner_id"]
    job = queue.submit("restore", [collection(key)], requested_by=(owner, "owner"))
    job = wait_state(job, Job.WAITING)
    since = job.wait_since
    assert job.wait_kind == "medium" and since is not None
    assert str(disk.mount) in job.wait_reason  # the admin is told where

    # Many more rechecks than max_attempts: each is a real run on the cluster.
    log = Path(job.log_dir, "job.log")
    for _ in range(3 * MAX_ATTEMPTS):
        runs = log.read_text().count("attempt ")
        time.sleep(1.1)  # past next_check on the real clock
        monitor()
        deadline = time.monotonic() + 30
        while log.read_text().count("attempt ") == runs and time.monotonic() < deadline:
            time.sleep(0.1)
        job = wait_state(job, Job.WAITING)
    assert log.read_text().count("attempt ") >= 3 * MAX_ATTEMPTS + 1
    assert job.state == Job.WAITING and job.attempts < MAX_ATTEMPTS and not job.error
    assert job.wait_since == since  # the wait keeps its start over the rechecks
    # One question e-mail, however many rechecks.
    mailbox.wait_for(f"restore of {key} is waiting")
    assert len(mails(mailbox, f"restore of {key} is waiting")) == 1

    # The API: the owner reads what it waits for and since when, without server paths.
    with standin_middleware():
        as_owner = data(Api(owner).get(f"{API}jobs/{job.pk}/"))
        as_admin = data(Api(user_ids(facility)["ingrid"]).get(f"{API}jobs/{job.pk}/"))
    assert as_owner["state"] == "waiting" and as_owner["wait_kind"] == "medium"
    assert "USB 4" in as_owner["wait_reason"] and "/" not in as_owner["wait_reason"]
    assert as_owner["wait_since"] and as_owner["wait_since"].startswith(since.isoformat()[:19])
    assert str(disk.mount) in as_admin["wait_reason"]

    # A day later (the test's clock), one reminder; the next tick sends none. That
    # monitor tick also hands the job to the cluster for a recheck: let it run first
    # (a reminder is due only while the job waits, not during a recheck's run), then
    # ask for reminders alone, as the monitor's next ticks would.
    later = datetime.now(timezone.utc) + timedelta(seconds=settings.WAIT_REMINDER + 1)
    job = wait_state(job, Job.WAITING)
    runs = log.read_text().count("attempt ")
    assert monitor(now=later)["reminded"] == [job.pk]
    deadline = time.monotonic() + 30
    while log.read_text().count("attempt ") == runs and time.monotonic() < deadline:
        time.sleep(0.1)
    job = wait_state(job, Job.WAITING)
    assert waiting.remind(later + timedelta(seconds=60)) == []
    [(_, reminder)] = mailbox.wait_for(f"reminder: restore of {key} still waiting")
    assert "waiting for 1 day" in reminder and str(disk.mount) in reminder
    assert waiting.remind(later + timedelta(days=6)) == [job.pk]
    assert len(mailbox.wait_for("still waiting")) == 2

    os.rename(str(id_dir) + ".away", id_dir)  # the disk is connected again
    time.sleep(1.1)
    monitor()
    job = wait_job(job)
    assert job.state == Job.DONE, job.error
    assert job.attempts == 1 and job.wait_since is None and job.wait_kind == "", log.read_text()
    assert job.summary["waited"]["kind"] == "medium"
    assert collection(key).state == Collection.ARCHIVED  # files back, the copy kept
    mailbox.wait_for(f"restore of {key} no longer waiting")
    mailbox.wait_for(f"restore done: {key}")


def test_a_job_that_gives_up_after_its_attempts_sends_an_error_email(catalog, mailbox):
    """A job whose workers died max_attempts times fails at its next claim, and says so
    by e-mail like any failed job."""
    job = Job.objects.create(kind="sync", state=Job.QUEUED, attempts=MAX_ATTEMPTS)
    queue.enqueue(job)
    job = wait_job(job)
    assert job.state == Job.FAILED and "gave up after" in job.error
    [(recipients, _)] = mailbox.wait_for(f"Job {job.pk} (sync")
    assert recipients == ["storage-admin@example.org"]

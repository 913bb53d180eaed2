"""Automatic archive selection, the quota check and the e-mail switches (in-process)."""
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from django.test import override_settings

from omero_storagemanager import settings
from omero_storagemanager.engine.locations import add_location
from omero_storagemanager.engine.sync import sync_collections
from omero_storagemanager.models import Collection, Copy, CopyFile, Job, Quota
from omero_storagemanager.tasks import notify
from omero_storagemanager.tasks.handle import JobHandle
from omero_storagemanager.tasks.policy import candidates, quota_check
from tests.test_jobs import Mailbox

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def mailbox():
    box = Mailbox()
    with override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=box.port,
                           SERVER_EMAIL="omero@example.org"):
        yield box
    box.stop()


@pytest.fixture
def synced(facility, app_db, monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "OMERO_DB", {"dsn": facility.dsn})
    monkeypatch.setattr(settings, "VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(settings, "ADMIN_EMAILS", ["storage-admin@example.org"])
    conn = psycopg2.connect(facility.dsn)
    conn.set_session(readonly=True, autocommit=True)
    sync_collections(conn)
    conn.close()
    return list(Collection.objects.order_by("kind", "omero_id"))


def _figures(collection, files, newest):
    Collection.objects.filter(pk=collection.pk).update(files=files, newest_file=newest)


def test_auto_archive_picks_old_collections_with_unarchived_files(synced, tmp_path):
    old, recent, done, partly, empty = synced[:5]
    _figures(old, 3, NOW - timedelta(days=30))
    _figures(recent, 3, NOW - timedelta(minutes=30))  # still being filled
    _figures(done, 2, NOW - timedelta(days=30))
    _figures(partly, 2, NOW - timedelta(days=30))
    _figures(empty, 0, None)
    (tmp_path / "mnt").mkdir()
    location = add_location("disk", "hdd", str(tmp_path / "mnt"), 10**9, current=True)
    for collection, archived in ((done, 2), (partly, 1)):
        copy = Copy.objects.create(collection=collection, location=location, bag_path="x",
                                   state=Copy.VERIFIED, created=NOW - timedelta(days=1))
        for i in range(archived):
            CopyFile.objects.create(copy=copy, relpath=f"f{i}", size=1, checksum="0" * 40,
                                    verified=True)
    chosen = candidates(now=NOW, users=[], min_age_hours=24)
    assert [c.key for c in chosen] == [c.key for c in (old, partly)]
    owners = [old.owner_id]
    assert [c.key for c in candidates(now=NOW, users=owners, min_age_hours=24)] == \
        [c.key for c in (old, partly) if c.owner_id in owners]
    Job.objects.create(kind="archive", state=Job.QUEUED).collections.set([old])
    assert old.key not in [c.key for c in candidates(now=NOW, users=[], min_age_hours=24)]


def test_quota_check_mails_who_is_over(synced, mailbox, facility):
    Quota.objects.create(scope="user", omero_id=None, max_bytes=1)  # everyone is over
    job = Job.objects.create(kind="quota_check", state=Job.RUNNING)
    with JobHandle(job) as handle:
        summary = quota_check(job, handle)
    owners = {c["owner_id"] for c in facility.truth.collections.values() if c["files"]}
    assert {f"user:{o}" for o in owners} <= set(summary["over_quota"])
    [(recipients, message)] = mailbox.wait_for("over quota", timeout=10)
    assert recipients == ["storage-admin@example.org"]
    users = {int(uid): u for uid, u in facility.truth.users.items()}
    assert all(users[o]["omename"] in message for o in owners if o in users)


def test_switched_off_kinds_send_nothing_and_test_email_arrives(synced, mailbox, monkeypatch):
    monkeypatch.setattr(settings, "NOTIFY", ["error"])
    assert notify.send("quota", "over quota", "body") is False
    assert notify.send("error", "it broke", "body") is True
    mailbox.wait_for("it broke", timeout=10)
    assert notify.test_email() == ["storage-admin@example.org"]
    mailbox.wait_for("test e-mail", timeout=10)
    assert not [m for m in mailbox.messages if "over quota" in m[1]]


def test_mail_server_down_never_fails_a_job(synced, monkeypatch):
    from testbed.pg import free_port

    with override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=free_port()):
        assert notify.send("error", "nobody listens", "body") is False

"""Cold storage classes (GLACIER, DEEP_ARCHIVE) of an S3 location, against moto's S3 in
server mode: SeaweedFS, the test bed's S3 server for everything else, has no
RestoreObject and serves objects of a cold class at once, so this part alone runs
against `moto_server` (testbed/motoserver.py, a real HTTP server in a subprocess).

What is shown: an archive in a cold class is verified by the SHA-1 checksum the server
kept (the objects cannot be read back: GET is refused); purge accepts such a copy on
that checksum and refuses one whose checksum the server does not give back; a restore
asks the server for the objects (RestoreObject), waits in the read-cache wait of a tape
(attempt given back, one question e-mail, reminders), and once HEAD says the objects are
there restores byte-identical files. moto completes a RestoreObject at once, so the
second run of the job finds the objects available.
"""
import base64
import hashlib
import os
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from omero_storagemanager import settings
from omero_storagemanager.engine.locations import audit
from omero_storagemanager.models import Collection, Copy, Job, S3Object
from omero_storagemanager.tasks import queue, runner, waiting

from .test_archive import clean
from .test_jobs import Mailbox
from .test_s3_location import S3World, SECRETS, world  # noqa: F401


@pytest.fixture(scope="module")
def moto():
    from testbed.motoserver import MotoServer

    server = MotoServer().start()
    yield server
    server.destroy()


@pytest.fixture
def cold_bucket(moto, request):
    name = "cold-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    moto.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


@pytest.fixture
def jobs_here(world, tmp_path, monkeypatch, mailbox):  # noqa: F811
    """Jobs run in this process (runner.run_job, as a django-q2 worker calls it) on the
    world's facility, mailing to a real SMTP server."""
    from django.test import override_settings

    from omero_storagemanager import preferences

    monkeypatch.setattr(settings, "OMERO_DB", {"dsn": world.dsn})
    monkeypatch.setattr(settings, "DATA_DIR", world.truth.data_dir)
    monkeypatch.setattr(settings, "MANAGED_DIR", world.truth.managed_dir)
    monkeypatch.setattr(settings, "VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(settings, "GATEWAY_FACTORY", "testbed.standin.admin_gateway")
    monkeypatch.setattr(settings, "COPY_WORKERS", 1)
    preferences.set_many({"admin_emails": ["storage-admin@example.org"]})
    mail = override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=mailbox.port,
                             SERVER_EMAIL="omero@example.org")
    mail.enable()
    yield
    mail.disable()


def payload_keys(server, bucket, copy, location):
    prefix = f"archive/{location.pk}/{copy.bag_path}/data/"
    page = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in page.get("Contents", [])]


def test_cold_archive_purge_then_restore_asks_the_server_waits_then_restores(
        world, moto, cold_bucket, jobs_here, mailbox):  # noqa: F811
    key = world.key_where(clean)
    before = world.files(key)
    location = world.s3_location(moto, cold_bucket, name="Glacier", storage_class="GLACIER")
    result = world.archive(key, location)
    assert result.state == "archived" and result.files == len(before)
    copy = Copy.objects.get(pk=result.copy_id)
    assert copy.state == Copy.VERIFIED
    client = moto.client()
    keys = payload_keys(moto, cold_bucket, copy, location)
    assert len(keys) == copy.files
    for k in keys:  # written cold: unreadable, so never read back at archive time...
        head = client.head_object(Bucket=cold_bucket, Key=k, ChecksumMode="ENABLED")
        assert head["StorageClass"] == "GLACIER" and "Restore" not in head
        with pytest.raises(ClientError) as refused:
            client.get_object(Bucket=cold_bucket, Key=k)
        assert refused.value.response["Error"]["Code"] == "InvalidObjectState"
    # ...but verified by the SHA-1 checksum the server kept: the file's own SHA-1.
    rows = S3Object.objects.filter(copy_file__copy=copy).select_related("copy_file")
    assert rows.count() == copy.files
    for row in rows:
        assert row.checksum.startswith("SHA1:")
        assert base64.b64decode(row.checksum[5:]).hex() == row.copy_file.checksum
    report = audit(location)  # by HEAD and checksum: nothing read, nothing wrong
    assert report.audited == 1 and not report.failed, report.problems

    purged = world.purge(key)  # accepted on the server's checksums
    assert not purged.blocked, purged.blocked
    assert world.collection(key).state == Collection.PURGED
    assert not any(os.path.lexists(p) for p in before)

    job = queue.submit("restore", [world.collection(key)], dispatch_now=False)
    assert runner.run_job(job.pk) == Job.WAITING
    job.refresh_from_db()
    assert job.wait_kind == "cache" and job.attempts == 0 and not job.error
    assert "GLACIER" in job.wait_reason and "being restored" in job.wait_reason
    assert "Glacier" in job.wait_public and "/" not in job.wait_public
    for k in keys:  # RestoreObject was sent for every object (moto completes it at once)
        head = client.head_object(Bucket=cold_bucket, Key=k)
        assert 'ongoing-request="false"' in head["Restore"]
    assert not any(os.path.lexists(p) for p in before)
    mailbox.wait_for(f"restore of {key} is waiting")
    later = datetime.now(timezone.utc) + timedelta(seconds=settings.WAIT_REMINDER + 1)
    assert waiting.remind(later) == [job.pk]
    mailbox.wait_for(f"reminder: restore of {key} still waiting")

    Job.objects.filter(pk=job.pk).update(next_check=datetime.now(timezone.utc))
    assert runner.run_job(job.pk) == Job.DONE
    job.refresh_from_db()
    assert job.attempts == 1 and job.summary["waited"]["kind"] == "cache"
    assert world.files(key) == before  # byte-identical, modes too
    assert world.collection(key).state == Collection.ARCHIVED
    assert len([m for m in mailbox.messages if f"restore of {key} is waiting" in m[1]]) == 1
    mailbox.wait_for(f"restore of {key} no longer waiting")


def test_purge_refuses_a_cold_object_whose_checksum_the_server_does_not_give(
        world, moto, cold_bucket):  # noqa: F811
    """The same bytes written again behind the app's back, without a checksum: size and
    ETag are the same, but nothing the server says now proves the bytes: no delete."""
    key = world.key_where(lambda c: clean(c) and len(c["files"]) >= 2)
    before = world.files(key)
    location = world.s3_location(moto, cold_bucket, name="Deep", storage_class="DEEP_ARCHIVE")
    copy = Copy.objects.get(pk=world.archive(key, location).copy_id)
    client = moto.client()
    keys = payload_keys(moto, cold_bucket, copy, location)
    victim = keys[0]
    relpath = victim.split("/data/", 1)[1]
    primary = next(p for p in before if p.endswith("/" + relpath))
    with open(primary, "rb") as f:
        same = f.read()
    client.put_object(Bucket=cold_bucket, Key=victim, Body=same, StorageClass="DEEP_ARCHIVE")
    head = client.head_object(Bucket=cold_bucket, Key=victim, ChecksumMode="ENABLED")
    assert "ChecksumSHA1" not in head  # the same ETag, no checksum kept
    result = world.purge(key)
    blocked = dict(result.blocked)
    assert any("server gives checksum none" in why for why in blocked.values()), blocked
    assert os.path.lexists(primary)  # never deleted on an unproven copy
    with open(primary, "rb") as f:
        assert hashlib.sha1(f.read()).hexdigest() == before[primary][0]


def test_a_cold_multipart_upload_is_verified_by_its_composite_checksum(moto, cold_bucket,
                                                                       tmp_path):
    from omero_storagemanager.backends.s3upload import server_checksum_matches

    from .test_s3_faults import backend_for

    MiB = 1 << 20
    backend = backend_for(moto, cold_bucket, tmp_path, storage_class="GLACIER",
                          part_size=5 * MiB, multipart_threshold=5 * MiB, concurrency=2)
    data = os.urandom(11 * MiB)
    (tmp_path / "big.bin").write_bytes(data)
    uploaded = backend.upload("project/1/2/3/07-12-2026_120000", "big.bin",
                              str(tmp_path / "big.bin"))
    parts = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    composite = hashlib.sha1(b"".join(hashlib.sha1(p).digest() for p in parts)).digest()
    assert uploaded.checksum == f"SHA1:{base64.b64encode(composite).decode()}-3"
    assert uploaded.sha1 == hashlib.sha1(data).hexdigest() and uploaded.etag.endswith("-3")
    head = backend.head(uploaded.key)
    assert head["StorageClass"] == "GLACIER"
    assert server_checksum_matches(uploaded.checksum, head)
    assert not moto.client().list_multipart_uploads(Bucket=cold_bucket).get("Uploads")


def test_a_cold_object_the_server_keeps_no_checksum_of_is_not_taken_for_verified(
        moto, cold_bucket, tmp_path):
    from omero_storagemanager.backends.s3upload import ReadBackMismatch

    from .test_s3_faults import backend_for

    backend = backend_for(moto, cold_bucket, tmp_path, storage_class="DEEP_ARCHIVE")
    (tmp_path / "small.bin").write_bytes(b"the bytes of the primary file")
    client = backend.client
    real_put = client.put_object

    def put_then_rewrite_without_checksum(**kwargs):
        answer = real_put(**kwargs)
        if kwargs["Key"].endswith("small.bin"):  # the same bytes (same ETag), no checksum
            real_put(Bucket=kwargs["Bucket"], Key=kwargs["Key"], Body=kwargs["Body"],
                     StorageClass="DEEP_ARCHIVE")
        return answer

    client.put_object = put_then_rewrite_without_checksum
    try:
        with pytest.raises(ReadBackMismatch) as refused:
            backend.upload("project/1/2/3/07-12-2026_120001", "small.bin",
                           str(tmp_path / "small.bin"))
    finally:
        client.put_object = real_put
    assert "gives checksum none" in str(refused.value)


def test_a_copy_written_cold_before_the_class_was_changed_is_still_asked_back(
        world, moto, cold_bucket):  # noqa: F811
    from omero_storagemanager.engine.restore import RestoreWaiting
    from omero_storagemanager.models import Location

    key = world.key_where(clean)
    before = world.files(key)
    location = world.s3_location(moto, cold_bucket, name="Was cold", storage_class="GLACIER")
    world.archive(key, location)
    assert not world.purge(key).blocked
    options = dict(location.options, storage_class="STANDARD")  # new copies no longer cold
    Location.objects.filter(pk=location.pk).update(options=options)
    with pytest.raises(RestoreWaiting) as waiting_for:  # the GET refused: asked back
        world.restore(key)
    assert "being restored from" in str(waiting_for.value)
    assert not any(os.path.lexists(p) for p in before)
    world.restore(key)
    assert world.files(key) == before
    assert world.collection(key).state == Collection.ARCHIVED

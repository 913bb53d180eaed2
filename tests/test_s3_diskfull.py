"""An S3 server whose disk is full, for real: the SeaweedFS test server's data folder is
a tmpfs mount of a few MB (`mount -t tmpfs -o size=...`; the tests run as root), filled
until the server refuses to store. An archive job to it then fails cleanly (the copy
never counted verified, its multipart uploads aborted, the error e-mail says what
happened, the primary files untouched); once space is freed (the tmpfs remounted
larger, as an admin grows a volume) a retry of the job finishes the copy.

A bucket quota was not used: SeaweedFS's quota enforcement lags the collection's size
(it was unreliable when tried), while a full disk is refused at once by the kernel.
"""
import hashlib
import os
import shutil
import subprocess

import pytest

from omero_storagemanager.models import Collection, Copy, CopyFile, Job
from omero_storagemanager.tasks import queue, runner

from .test_archive import clean
from .test_s3_cold import jobs_here, mailbox  # noqa: F401
from .test_s3_location import S3World, world  # noqa: F401

SIZE_MB = 24  # the data folder's filesystem at the start
MiB = 1 << 20


def _mount(*args):
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"this test mounts a small tmpfs for the S3 server's data (it needs "
                    f"root and tmpfs): mount {' '.join(args)}: {done.stderr.strip()}")


@pytest.fixture
def small_server(tmp_path):
    """A SeaweedFS server whose data folder is a tmpfs of SIZE_MB MB."""
    from testbed.seaweed import SeaweedServer

    base = tmp_path / "weed"
    data = base / "data"
    data.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs", str(data))
    server = SeaweedServer(base)
    try:
        server.start()
        server.data_mount = data
        yield server
    finally:
        server.stop()
        subprocess.run(["umount", str(data)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def fill(server, bucket):
    """Store ballast objects (outside the location's prefix) until the server refuses:
    its disk is full. Returns how many were stored."""
    from botocore.exceptions import ClientError

    client = server.client()
    for n in range(10 * SIZE_MB):
        try:
            client.put_object(Bucket=bucket, Key=f"ballast/{n}", Body=b"\0" * MiB)
        except ClientError:
            return n
    raise AssertionError(f"{10 * SIZE_MB} MiB stored on a {SIZE_MB} MB disk")


def grow(server, mb):
    _mount("-o", f"remount,size={mb}m", str(server.data_mount))


def test_archive_to_a_full_disk_fails_cleanly_then_a_retry_finishes(
        world, small_server, jobs_here, mailbox):  # noqa: F811
    server = small_server
    server.client().create_bucket(Bucket="full")
    key = world.key_where(lambda c: clean(c) and len(c["files"]) >= 4)
    before = world.files(key)
    # Every file goes multipart (a threshold of 1 byte), to see uploads aborted.
    location = world.s3_location(server, "full", name="Small disk", multipart_threshold=1,
                                 concurrency=2)
    assert fill(server, "full") > 0
    # Room for about half the collection: some files are stored, then the disk is full.
    size = sum(os.path.getsize(p) for p in before)
    grow(server, SIZE_MB + size // 2 // MiB)

    job = queue.submit("archive", [world.collection(key)], location, dispatch_now=False)
    assert runner.run_job(job.pk) == Job.FAILED
    job.refresh_from_db()
    assert "untouched" in job.error and "Small disk" in job.error
    assert "full disk" in job.error or "out of space" in job.error, job.error
    # Never counted verified; the files stored before the disk filled are kept (rows
    # only for objects the server holds), the rest not recorded.
    [copy] = Copy.objects.filter(location=location)
    assert copy.state == Copy.WRITING
    assert 0 < CopyFile.objects.filter(copy=copy).count() < len(before)
    assert world.collection(key).state == Collection.ONLINE
    client = server.client()
    for entry in CopyFile.objects.filter(copy__location=location):
        body = client.get_object(Bucket="full", Key=f"archive/{location.pk}/"
                                 f"{entry.copy.bag_path}/data/{entry.relpath}")["Body"].read()
        assert hashlib.sha1(body).hexdigest() == entry.checksum
    assert not client.list_multipart_uploads(Bucket="full").get("Uploads")  # aborted
    assert world.files(key) == before  # nothing lost
    [(_, mail)] = [m for m in mailbox.messages if f"archive failed: {key}" in m[1]]
    assert "full disk" in mail or "out of space" in mail
    assert "untouched" in mail and f"jobs retry {job.pk}" in mail

    grow(server, 4 * SIZE_MB)  # space freed
    queue.retry(job)
    assert runner.run_job(job.pk) == Job.DONE, Job.objects.get(pk=job.pk).error
    copy = Copy.objects.get(location=location, state=Copy.VERIFIED)
    assert copy.files == len(before)  # the copy begun, finished: one copy
    assert Copy.objects.filter(location=location).count() == 1
    assert world.collection(key).state == Collection.ARCHIVED
    assert not client.list_multipart_uploads(Bucket="full").get("Uploads")
    assert world.files(key) == before

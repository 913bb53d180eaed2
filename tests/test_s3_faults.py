"""Faults of an S3 location, each against the real server of the test bed (SeaweedFS):
the server killed mid-archive and mid-multipart-upload then restarted, a part lost from
a multipart upload, the server answering with other bytes than were written.

The server is really killed (SIGKILL of `weed server`) and started again on the same
folder and ports; only the loss of a part is made on the client's side (the upload
reports a part the server never received), because no server loses one on request:
the server's own check refuses the completion.
"""
import os

import pytest

from omero_storagemanager.backends.base import LocationConfig
from omero_storagemanager.backends.s3 import S3Backend, S3Unreachable
from omero_storagemanager.engine.archive import ArchiveError, archive_collection
from omero_storagemanager.engine.progress import NullProgress
from omero_storagemanager.models import Collection, Copy, CopyFile, S3Object

from .test_archive import clean
from .test_s3_location import S3World, SECRETS, keys_under, world  # noqa: F401

MiB = 1 << 20


def backend_for(server, bucket, tmp_path, **options):
    """An S3Backend used on its own (no database row), its marker written."""
    (tmp_path / "staging").mkdir(exist_ok=True)
    config = LocationConfig(
        id=77, name="faults", type="s3", mount=str(tmp_path / "staging"), max_bytes=10**12,
        marker="m-77", options=dict(bucket=bucket, endpoint_url=server.endpoint,
                                    region="us-east-1", addressing_style="path",
                                    credentials="config:faults", **options))
    backend = S3Backend(config)
    backend.secret_lookup = {"faults": {"access_key_id": server.access_key,
                                        "secret_access_key": server.secret_key}}.get
    backend.initialize()
    return backend


def pending_uploads(server, bucket):
    return server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


class KillAfter(NullProgress):
    """Kills the S3 server once `count` files were verified (a crash mid-archive)."""

    def __init__(self, server, count):
        self.server, self.count, self.seen = server, count, 0

    def advance(self, items=1, files=0, nbytes=0):
        self.seen += files
        if self.seen == self.count:
            self.server.kill()


def test_server_killed_mid_archive_then_restarted_resumes_never_verified_early(
        world, s3_server, s3_bucket):  # noqa: F811
    key = world.key_where(lambda c: clean(c) and len(c["files"]) >= 4)
    location = world.s3_location(s3_server, s3_bucket, concurrency=1)
    collection = world.collection(key)
    try:
        with pytest.raises((ArchiveError, S3Unreachable)) as stopped:
            archive_collection(world.conn, world.paths, collection, location,
                               progress=KillAfter(s3_server, 2), log=lambda _: None)
    finally:
        s3_server.start()
    assert "untouched" in str(stopped.value) or "cannot be reached" in str(stopped.value)
    copy = Copy.objects.get(collection=collection, location=location)
    assert copy.state == Copy.WRITING  # never counted verified early
    assert world.collection(key).state == Collection.ONLINE
    done = CopyFile.objects.filter(copy=copy).count()
    assert 2 <= done < len(world.files(key))
    assert not any(k.endswith("-complete") for k in keys_under(s3_server, s3_bucket))
    result = archive_collection(world.conn, world.paths, world.collection(key), location,
                                log=lambda _: None)
    assert result.copy_id == copy.pk and result.files == len(world.files(key))
    assert Copy.objects.get(pk=copy.pk).state == Copy.VERIFIED
    assert S3Object.objects.filter(copy_file__copy=copy).count() == result.files
    assert not pending_uploads(s3_server, s3_bucket)


def test_server_killed_mid_multipart_upload_leaves_nothing_after_the_next_run(
        s3_server, s3_bucket, tmp_path):
    backend = backend_for(s3_server, s3_bucket, tmp_path, part_size=5 * MiB,
                          multipart_threshold=5 * MiB, concurrency=1)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))
    relpath = "project/1/2/3/07-12-2026_120000"
    client = backend.client
    real_upload_part = client.upload_part

    def upload_part_then_crash(**kwargs):
        if kwargs["PartNumber"] == 2:
            s3_server.kill()  # the server dies with the first part stored
        return real_upload_part(**kwargs)

    client.upload_part = upload_part_then_crash
    try:
        with pytest.raises(Exception):
            backend.upload(relpath, "ManagedRepository/big.bin", str(big))
    finally:
        client.upload_part = real_upload_part
        s3_server.start()
    # The abort could not reach the dead server: the upload is still open there...
    assert [u["Key"] for u in pending_uploads(s3_server, s3_bucket)] == [
        backend.payload_key(relpath, "ManagedRepository/big.bin")]
    # ...until the next archive of that copy aborts it (s3archive._open_copy).
    assert backend.abort_uploads(relpath) == 1
    assert not pending_uploads(s3_server, s3_bucket)
    uploaded = backend.upload(relpath, "ManagedRepository/big.bin", str(big))
    assert uploaded.size == 12 * MiB and uploaded.etag.endswith("-3")
    assert not pending_uploads(s3_server, s3_bucket)


def test_a_part_lost_from_a_multipart_upload_is_refused_and_aborted(
        s3_server, s3_bucket, tmp_path):
    backend = backend_for(s3_server, s3_bucket, tmp_path, part_size=5 * MiB,
                          multipart_threshold=5 * MiB, concurrency=2)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * MiB))
    client = backend.client
    real_upload_part = client.upload_part

    def lose_part_two(**kwargs):
        if kwargs["PartNumber"] == 2:  # never reaches the server; a made-up ETag
            return {"ETag": '"0123456789abcdef0123456789abcdef"'}
        return real_upload_part(**kwargs)

    client.upload_part = lose_part_two
    try:
        with pytest.raises(Exception) as refused:
            backend.upload("project/1/2/3/07-12-2026_120001", "big.bin", str(big))
    finally:
        client.upload_part = real_upload_part
    assert "InvalidPart" in str(refused.value) or "part" in str(refused.value).lower()
    assert not pending_uploads(s3_server, s3_bucket)  # aborted, nothing left to pay for
    assert backend.head(backend.payload_key("project/1/2/3/07-12-2026_120001",
                                            "big.bin")) is None


def test_read_back_catches_an_object_that_is_not_the_bytes_sent(s3_server, s3_bucket,
                                                                 tmp_path):
    from omero_storagemanager.backends import s3upload

    backend = backend_for(s3_server, s3_bucket, tmp_path)
    small = tmp_path / "small.bin"
    small.write_bytes(b"the bytes of the primary file")
    client = backend.client
    real_put = client.put_object

    def put_then_overwrite(**kwargs):
        answer = real_put(**kwargs)
        if kwargs["Key"].endswith("small.bin"):  # someone else writes the key meanwhile
            real_put(Bucket=kwargs["Bucket"], Key=kwargs["Key"], Body=b"other bytes!")
        return answer

    client.put_object = put_then_overwrite
    try:
        with pytest.raises(s3upload.ReadBackMismatch) as caught:
            backend.upload("project/1/2/3/07-12-2026_120002", "small.bin", str(small))
    finally:
        client.put_object = real_put
    assert "not the one uploaded" in str(caught.value) or "read back" in str(caught.value)


def test_restore_waits_while_the_server_is_down_then_resumes(world, s3_server,  # noqa: F811
                                                             s3_bucket):
    from omero_storagemanager.engine.restore import RestoreWaiting

    key = world.key_where(clean)
    before = world.files(key)
    location = world.s3_location(s3_server, s3_bucket, name="Far bucket")
    world.archive(key, location)
    assert not world.purge(key).blocked
    s3_server.kill()
    try:
        with pytest.raises(RestoreWaiting) as waiting:
            world.restore(key)
    finally:
        s3_server.start()
    assert "Far bucket" in str(waiting.value) and "cannot be reached" in str(waiting.value)
    assert world.collection(key).state == Collection.RESTORING
    assert not any(os.path.lexists(p) for p in before)
    world.restore(key)
    assert world.files(key) == before
    assert world.collection(key).state == Collection.ARCHIVED


def test_deleting_a_copy_deletes_only_what_the_app_wrote(world, s3_server,  # noqa: F811
                                                         s3_bucket):
    key = world.key_where(clean)
    location = world.s3_location(s3_server, s3_bucket)
    copy = Copy.objects.get(pk=world.archive(key, location).copy_id)
    bag = f"archive/{location.pk}/{copy.bag_path}"
    stranger = f"{bag}/data/not-ours.txt"  # someone else's object inside the bag's prefix
    s3_server.client().put_object(Bucket=s3_bucket, Key=stranger, Body=b"keep me")
    backend = location.backend()
    deleted = backend.delete_copy(copy.bag_path)
    assert deleted == copy.files + 5  # payload, four tag files, the completion object
    assert keys_under(s3_server, s3_bucket, bag + "/") == [stranger]
    assert backend.completion(copy.bag_path) is None

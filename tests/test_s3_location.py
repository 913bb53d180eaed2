"""The S3 location kind against a real S3 server (SeaweedFS, testbed/seaweed.py):
archive, purge, restore, audit, rescan, with the same states and guarantees as disks.

Real files, a real OMERO-shaped database, a real `weed server -s3`; the stand-in gateway
only for OMERO's own changes.
"""
import os
import re

import pytest

from omero_storagemanager.backends.base import BadLocation, WrongDisk
from omero_storagemanager.backends.s3 import COMPLETE_NAME, MARKER_NAME, S3Unreachable
from omero_storagemanager.engine.archive import ArchiveError
from omero_storagemanager.engine.locations import add_location, audit, rescan
from omero_storagemanager.models import (Collection, Copy, CopyFile, Location, PurgedFile,
                                         S3Object)

from .test_archive import GB, World, clean, world_of

SECRETS = {}


class S3World(World):
    def s3_location(self, server, bucket, name="Bucket", prefix="archive", **options):
        staging = self.root / f"staging-{name}"
        staging.mkdir(exist_ok=True)
        secret = re.sub(r"\W", "-", name)  # a secret's name: no spaces
        SECRETS[secret] = {"access_key_id": server.access_key,
                           "secret_access_key": server.secret_key}
        options = dict(bucket=bucket, endpoint_url=server.endpoint, region="us-east-1",
                       prefix=prefix, addressing_style="path",
                       credentials=f"config:{secret}", **options)
        return add_location(name, "s3", str(staging), GB, current=True, options=options)


@pytest.fixture
def world(pg_server, tmp_path, request, app_db, monkeypatch):
    from omero_storagemanager import settings

    monkeypatch.setattr(settings, "S3_CREDENTIALS", SECRETS)
    yield from world_of(S3World, "s3_", pg_server, tmp_path, request)


def keys_under(server, bucket, prefix=""):
    client = server.client()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def test_archive_to_s3_uploads_a_verified_bag_with_completion_last(world, s3_server, s3_bucket):
    key = world.key_where(clean)
    before = world.files(key)
    location = world.s3_location(s3_server, s3_bucket)
    result = world.archive(key, location)
    assert result.state == "archived" and result.files == len(before)
    copy = Copy.objects.get(pk=result.copy_id)
    assert copy.state == Copy.VERIFIED
    assert world.collection(key).state == Collection.ARCHIVED
    keys = set(keys_under(s3_server, s3_bucket))
    bag = f"archive/{location.pk}/{copy.bag_path}"
    assert f"archive/{location.pk}/{MARKER_NAME}" in keys
    for name in ("bagit.txt", "bag-info.txt", "manifest-sha1.txt", "tagmanifest-sha1.txt",
                 COMPLETE_NAME):
        assert f"{bag}/{name}" in keys
    payload = {k[len(bag) + len("/data/"):] for k in keys if k.startswith(bag + "/data/")}
    assert payload == set(CopyFile.objects.filter(copy=copy).values_list("relpath", flat=True))
    assert S3Object.objects.filter(copy_file__copy=copy).count() == len(payload)
    # The manifest names each object's SHA1, as a disk bag's does.
    manifest = s3_server.client().get_object(Bucket=s3_bucket, Key=f"{bag}/manifest-sha1.txt")
    lines = manifest["Body"].read().decode().splitlines()
    assert len(lines) == len(payload)
    again = world.archive(key, location)
    assert again.state == "unchanged"


def test_purge_then_restore_from_s3_gives_back_identical_files(world, s3_server, s3_bucket):
    key = world.key_where(clean)
    before = world.files(key)
    location = world.s3_location(s3_server, s3_bucket)
    world.archive(key, location)
    result = world.purge(key)
    assert not result.blocked, result.blocked
    assert not any(os.path.lexists(p) for p in before)
    assert world.collection(key).state == Collection.PURGED
    world.restore(key)
    assert world.files(key) == before
    assert world.collection(key).state == Collection.ARCHIVED
    assert not PurgedFile.objects.filter(collection=world.collection(key)).exclude(
        state=PurgedFile.RESTORED).exists()


def test_server_down_during_purge_deletes_no_primary_file(world, s3_server, s3_bucket):
    key = world.key_where(clean)
    before = world.files(key)
    location = world.s3_location(s3_server, s3_bucket)
    world.archive(key, location)
    s3_server.kill()
    try:
        result = world.purge(key)
    finally:
        s3_server.start()
    assert not result.freed and result.blocked
    assert all("cannot be read now" in why for _, why in result.blocked), result.blocked
    assert world.files(key) == before
    assert world.collection(key).state == Collection.ARCHIVED


def test_object_overwritten_behind_the_apps_back_is_caught_by_audit_and_purge(
        world, s3_server, s3_bucket):
    key = world.key_where(clean)
    before = world.files(key)
    location = world.s3_location(s3_server, s3_bucket)
    result = world.archive(key, location)
    copy = Copy.objects.get(pk=result.copy_id)
    entry = CopyFile.objects.filter(copy=copy).order_by("relpath").first()
    object_key = f"archive/{location.pk}/{copy.bag_path}/data/{entry.relpath}"
    body = s3_server.client().get_object(Bucket=s3_bucket, Key=object_key)["Body"].read()
    tampered = bytes([body[0] ^ 1]) + body[1:] if body else b"x"
    s3_server.client().put_object(Bucket=s3_bucket, Key=object_key, Body=tampered)
    plan = world.purge(key)
    blocked = dict(plan.blocked)
    assert any("overwritten" in why or "damaged" in why for why in blocked.values()), blocked
    assert len(plan.blocked) == 1  # only that file is kept
    restored_path = next(p for p in before if p.endswith(entry.relpath.split("/", 1)[1]))
    assert os.path.exists(restored_path)
    report = audit(location)
    assert report.failed and any(entry.relpath in p for p in report.problems)
    assert Copy.objects.get(pk=copy.pk).state == Copy.FAILED_AUDIT


def test_wrong_credentials_missing_bucket_and_foreign_prefix_are_refused(
        world, s3_server, s3_bucket):
    key = world.key_where(clean)
    location = world.s3_location(s3_server, s3_bucket)
    SECRETS[location.name] = {"access_key_id": "nobody", "secret_access_key": "wrong-secret"}
    with pytest.raises(S3Unreachable) as refused:
        location.backend().check_online()
    assert "refused the credentials" in str(refused.value)
    assert "wrong-secret" not in str(refused.value)
    with pytest.raises(S3Unreachable):
        world.archive(key, location)
    # Missing bucket
    with pytest.raises(S3Unreachable) as missing:
        world.s3_location(s3_server, "no-such-bucket-here", name="Missing")
    assert "does not exist" in str(missing.value)
    assert not Copy.objects.exists()
    # A prefix holding someone else's objects
    s3_server.client().put_object(Bucket=s3_bucket, Key="theirs/data/x.tif", Body=b"x")
    with pytest.raises(BadLocation) as foreign:
        world.s3_location(s3_server, s3_bucket, name="Foreign", prefix="theirs")
    assert "theirs/data/ is not this application's" in str(foreign.value)
    with pytest.raises(BadLocation):  # the bucket's top holds it too: no prefix refused
        world.s3_location(s3_server, s3_bucket, name="Top", prefix="")
    assert not Location.objects.filter(name__in=["Foreign", "Top", "Missing"]).exists()


def test_marker_of_another_location_is_refused_at_every_use(world, s3_server, s3_bucket):
    key = world.key_where(clean)
    location = world.s3_location(s3_server, s3_bucket)
    world.archive(key, location)
    s3_server.client().put_object(Bucket=s3_bucket,
                                  Key=f"archive/{location.pk}/{MARKER_NAME}", Body=b"other\n")
    with pytest.raises(WrongDisk) as wrong:
        location.backend().check_online()
    assert "another location's prefix" in str(wrong.value)
    result = world.purge(key)
    assert not result.freed


def test_rescan_registers_complete_copies_only(world, s3_server, s3_bucket):
    key = world.key_where(clean)
    location = world.s3_location(s3_server, s3_bucket)
    result = world.archive(key, location)
    copy = Copy.objects.get(pk=result.copy_id)
    files = copy.files
    # The app forgets the copy; a rescan finds it again from the bucket.
    S3Object.objects.filter(copy_file__copy=copy).delete()
    CopyFile.objects.filter(copy=copy).delete()
    Copy.objects.filter(pk=copy.pk).delete()
    added = rescan(location).added
    assert added == [copy.bag_path]
    found = Copy.objects.get(location=location, bag_path=copy.bag_path)
    assert found.state == Copy.VERIFIED and found.files == files
    assert S3Object.objects.filter(copy_file__copy=found).count() == files
    # A copy without its completion object is not registered.
    client = s3_server.client()
    client.delete_object(Bucket=s3_bucket,
                         Key=f"archive/{location.pk}/{copy.bag_path}/{COMPLETE_NAME}")
    Copy.objects.filter(pk=found.pk).delete()
    assert rescan(location).added == []


def test_object_lock_retention_is_set_and_the_app_never_deletes_within_it(
        world, s3_server):
    from omero_storagemanager.backends.s3 import RetentionHeld

    bucket = "locked-" + os.urandom(3).hex()
    s3_server.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    key = world.key_where(clean)
    location = world.s3_location(s3_server, bucket, name="Locked",
                                 object_lock_mode="GOVERNANCE", object_lock_days=2)
    copy = Copy.objects.get(pk=world.archive(key, location).copy_id)
    entry = CopyFile.objects.filter(copy=copy).first()
    head = s3_server.client().head_object(
        Bucket=bucket, Key=f"archive/{location.pk}/{copy.bag_path}/data/{entry.relpath}")
    assert head.get("ObjectLockMode") == "GOVERNANCE", head
    before = set(keys_under(s3_server, bucket))
    with pytest.raises(RetentionHeld) as held:
        location.backend().delete_copy(copy.bag_path)
    assert "retention until" in str(held.value) and "nothing was deleted" in str(held.value)
    assert set(keys_under(s3_server, bucket)) == before

"""Rebuild (issue 20) from an S3 location: the app database lost after a full cycle on a
bucket (real SeaweedFS) comes back from the marker and settings objects under the
prefix and the bags' objects; the purged collection is then restored from it.

S3 bags carry no purge-record or file tag objects yet (engine/purgetags.py): the
purge records come back inferred from OMERO and the repository, and the report says so.
"""
import pytest

from omero_storagemanager.engine.rebuild import rebuild
from omero_storagemanager.engine.sync import sync_collections
from omero_storagemanager.models import Collection, Location
from omero_storagemanager.verbs.rebuild import summary
from tests.test_rebuild import _ids, lose_the_database, same, snapshot
from tests.test_rescan import clean_keys
from tests.test_s3_location import SECRETS, S3World
from tests.test_archive import world_of


@pytest.fixture
def world(pg_server, tmp_path, request, app_db, monkeypatch):
    from omero_storagemanager import settings

    monkeypatch.setattr(settings, "S3_CREDENTIALS", SECRETS)
    yield from world_of(S3World, "rbs3_", pg_server, tmp_path, request)


def test_a_lost_database_comes_back_from_an_s3_bucket_and_restores(world, s3_server,
                                                                    s3_bucket):
    purged, archived = clean_keys(world, 2)
    bucket = world.s3_location(s3_server, s3_bucket, name="Cloud archive")
    Location.objects.filter(pk=bucket.pk).update(max_bytes=3 * 10**12)  # an edit...
    bucket.refresh_from_db()
    from omero_storagemanager.engine.locationfile import refresh_descriptions
    refresh_descriptions([bucket])  # ...and what an edit writes for a rebuild
    world.archive(purged, bucket)
    world.archive(archived, bucket)
    files = world.files(purged)
    user, group = _ids(world)
    world.purge(purged, rename=True, archive_user_id=user, archive_group_id=group)
    sync_collections(world.conn)
    before = snapshot()
    options, staging = dict(bucket.options), bucket.mount

    lose_the_database()
    report = rebuild(world.conn, world.paths, buckets=[(options, staging)],
                     log=lambda _: None)
    text = "\n".join(summary(report))
    assert report.decided, text
    assert "added back from its marker object (its settings object)" in text, text
    assert report.purged_inferred == len(before["purged"]) > 0, text
    # S3 bags carry no file tags (filetags.py): each file's source mtime is not known
    # again (its mode is the default a restore gives); everything else is.
    after = snapshot()
    for rows in (after["files"], before["files"]):
        for key, row in rows.items():
            rows[key] = row[:-1]
    assert same(after, before)
    assert Location.objects.get(pk=bucket.pk).options == options

    world.restore(purged)
    assert world.files(purged) == files
    assert world.collection(purged).state == Collection.ARCHIVED


def test_a_bucket_that_cannot_be_read_is_named_and_nothing_added(world, s3_server,
                                                                 s3_bucket):
    bucket = world.s3_location(s3_server, s3_bucket, name="Cloud archive")
    options, staging = dict(bucket.options), bucket.mount
    lose_the_database()
    wrong = dict(options, bucket="no-such-bucket-here")
    report = rebuild(world.conn, world.paths, buckets=[(wrong, staging)], log=lambda _: None)
    assert not report.decided
    assert any("no-such-bucket-here" in line and "does not exist" in line
               for line in report.undecided), report.undecided
    assert not Location.objects.exists()


def test_the_command_needs_a_staging_folder_for_a_bucket(app_db):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--bucket needs --s3-staging FOLDER"):
        call_command("storagemanager", "rebuild", "--bucket", "omero-archive")

"""A copy on the archive medium only can be relied on by a purge (issue 20, chapter 15).

The manual's jukebox facility purges "the least accessed projects" when the file server
runs low; by then their copies have left write/ (burned to BluRay by the archiver) and
read/ (the 22:30 cache purge). Such a copy cannot be read now, so a purge relies on it
only while a check that found it whole is younger than purge_audit_max_age_days. The
archive's own verification (every file read back from the disk and compared, the
Copy's verified_at) is such a check: without it counting, a copy that left the cache
could never be purged against (no audit can read it either), and the purge "succeeded"
freeing nothing. A later audit that failed, or a verification too old, still refuses.
"""
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from omero_storagemanager.models import Collection, Copy
from tests.test_archive import World, world_of
from tests.test_rescan import clean_keys


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    yield from world_of(World, "medonly_", pg_server, tmp_path, request)


def test_a_copy_that_left_the_cache_counts_on_its_verification_while_fresh(world, tmp_path):
    [key] = clean_keys(world, 1)
    jukebox = world.location("automated", name="BluRay Archive", purge_watermark=80,
                             purge_enabled=True)
    before = world.files(key)
    world.archive(key, jukebox)
    copy = Copy.objects.get(location=jukebox, collection=world.collection(key))
    assert copy.state == Copy.VERIFIED and copy.verified_at is not None
    # The archiver takes write/<copy> to its discs; the cache purge lets read/<copy> go.
    root = Path(jukebox.mount, str(jukebox.pk))
    shutil.move(root / "write" / copy.bag_path, tmp_path / "disc")
    jukebox.backend().evict(copy.bag_path)
    assert not (root / "read" / copy.bag_path).exists()

    # Verified longer ago than the audit age: not relied on, nothing deleted.
    Copy.objects.filter(pk=copy.pk).update(
        verified_at=datetime.now(timezone.utc) - timedelta(days=31))
    plan = world.purge(key, audit_max_age_days=30)
    assert plan.freed == [] and plan.blocked
    assert world.files(key) == before

    # Verified recently, but an audit since found it damaged: not relied on either.
    Copy.objects.filter(pk=copy.pk).update(
        verified_at=datetime.now(timezone.utc) - timedelta(days=2),
        last_audit=datetime.now(timezone.utc) - timedelta(days=1), last_audit_ok=False)
    plan = world.purge(key, audit_max_age_days=30)
    assert plan.freed == [] and world.files(key) == before

    # Verified two days ago and never found wrong since: the purge relies on it.
    Copy.objects.filter(pk=copy.pk).update(last_audit=None, last_audit_ok=None)
    plan = world.purge(key, audit_max_age_days=30)
    assert plan.freed and not plan.blocked, plan.blocked
    assert world.collection(key).state == Collection.PURGED
    assert not any(os.path.exists(path) for path in before)


def test_a_disk_on_the_shelf_still_needs_an_audit(world, tmp_path):
    """An hdd location's disk can be connected and audited: its archive verification
    alone does not let a purge rely on it while it is away (chapter 13's USB drives)."""
    [key] = clean_keys(world, 1)
    drive = world.location("hdd", name="Drive-1")
    before = world.files(key)
    world.archive(key, drive)
    os.rename(drive.mount, tmp_path / "shelf")  # unplugged, verified minutes ago
    os.mkdir(drive.mount)
    plan = world.purge(key, audit_max_age_days=30)
    assert plan.freed == [] and plan.blocked
    assert "no audit found it whole" in plan.blocked[0][1], plan.blocked[0]
    assert world.files(key) == before

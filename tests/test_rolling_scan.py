"""The rolling stat scan (issue 20): each scheduled scan also stat-scans the collections
whose disk figures (files on disk, last access) are oldest, so that all are covered
within stat_scan_period_days. Run through the scan job's handler in-process.
"""
import math

import pytest

from omero_storagemanager import settings
from omero_storagemanager.models import Collection, Job, ScanResult
from omero_storagemanager.tasks.handle import JobHandle
from omero_storagemanager.tasks.handlers import scan_job
from omero_storagemanager.tasks.schedules import set_schedule
from tests.test_archive import World, world_of


@pytest.fixture
def world(pg_server, tmp_path, request, app_db, monkeypatch):
    for w in world_of(World, "roll_", pg_server, tmp_path, request):
        monkeypatch.setattr(settings, "OMERO_DB", {"dsn": w.dsn})
        monkeypatch.setattr(settings, "DATA_DIR", w.truth.data_dir)
        monkeypatch.setattr(settings, "MANAGED_DIR", w.truth.managed_dir)
        monkeypatch.setattr(settings, "VAR_DIR", str(tmp_path / "var"))
        monkeypatch.setattr(settings, "STAT_SCAN_PERIOD_DAYS", 2)
        yield w


def scheduled_scan():
    job = Job.objects.create(kind="scan", state=Job.RUNNING, worker="test",
                             params={"scheduled": True})
    with JobHandle(job) as handle:
        return scan_job(job, handle)


def stat_scanned():
    return set(ScanResult.objects.filter(mode="stat").values_list("collection_id", flat=True))


def test_every_collection_gets_fresh_disk_figures_within_the_period(world):
    set_schedule("scan", "01:00, 13:00")  # two runs a day, a period of two days: 4 runs
    total = Collection.objects.filter(gone=False).count()
    per_run = math.ceil(total / 4)
    seen = []
    for _ in range(4):
        summary = scheduled_scan()
        assert summary["mode"] == "catalog" and summary["stat_scanned"] == per_run
        seen.append(stat_scanned())
    assert len(seen[0]) == per_run and seen[-1] == set(
        Collection.objects.filter(gone=False).values_list("pk", flat=True))
    # Stat-scanned collections carry their last access from the disk.
    assert Collection.objects.filter(gone=False, last_access__isnull=False).count() > 0
    # The next run starts over with the oldest figures: the first slice.
    first = ScanResult.objects.filter(mode="stat").order_by("finished", "pk").first()
    scheduled_scan()
    assert ScanResult.objects.filter(mode="stat", collection_id=first.collection_id).count() >= 2


def test_a_scan_run_by_hand_is_only_what_was_asked(world):
    job = Job.objects.create(kind="scan", state=Job.RUNNING, worker="test", params={})
    with JobHandle(job) as handle:
        summary = scan_job(job, handle)
    assert "stat_scanned" not in summary and stat_scanned() == set()

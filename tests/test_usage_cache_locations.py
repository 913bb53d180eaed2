"""The capacity history of a tape or automated location counts its cache disk (issue 20).

Its maximum size is the cache disk's (engine/capacity.py): the planner's daily location
rows must compare what write/ and read/ hold with it, not every copy ever archived,
which on a tape location soon adds up to more than the disk (the copies are on tape).
"""
from datetime import date

from django.utils import timezone

from omero_storagemanager.engine import capacity
from omero_storagemanager.engine import usage
from omero_storagemanager.engine.locations import add_location
from omero_storagemanager.models import Collection, Copy, UsageRecord
from tests.test_api import world  # noqa: F401 (the fixture)

GIB = 2**30


def test_a_tape_location_records_its_cache_not_every_copy(world):  # noqa: F811
    ids, api, tmp_path = world
    (tmp_path / "cache").mkdir()
    tape = add_location("Tape library", "tape", str(tmp_path / "cache"), 10 * GIB,
                        purge_watermark=50, purge_enabled=True)
    # Three years of copies, far more than the cache disk; all on tape now (neither
    # write/ nor read/ holds them).
    for n, collection in enumerate(Collection.objects.all()[:3]):
        Copy.objects.create(collection=collection, location=tape, state=Copy.VERIFIED,
                            files=1, bytes=12 * GIB, created=timezone.now(),
                            bag_path=f"project/3/2/{n + 1}/05-01-2027_00000{n}")
    measured = capacity.measure(tape)
    assert measured.cache_used == 0 and measured.medium_only_copies == 3
    usage.record_usage(date(2027, 1, 5))
    row = UsageRecord.objects.get(scope=UsageRecord.LOCATION, subject=tape.pk)
    assert (row.bytes, row.limit_bytes) == (measured.cache_used, 10 * GIB)

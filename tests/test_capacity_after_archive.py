"""A tape or automated location's figures count the copy just archived (issue 20).

The figures Admin -> Locations shows (write queue, read cache) are measured on the disk
before each archive; the copy the archive then writes into write/ and read/ must be in
them too, or after a night's archive the page shows the write queue without the night's
last copy until the next measure (the evening's location purge).
"""
import pytest

from omero_storagemanager.backends.base import walk_bags
from omero_storagemanager.backends.fsutil import tree_bytes
from omero_storagemanager.models import Location
from tests.test_archive import World, clean, world_of


@pytest.fixture
def world(pg_server, tmp_path, request, app_db):
    yield from world_of(World, "cpa_", pg_server, tmp_path, request)


def on_disk(location, area):
    backend = location.backend()
    return sum(tree_bytes(path) for _, path in walk_bags(getattr(backend, f"{area}_root")))


@pytest.mark.parametrize("kind", ["tape", "automated"])
def test_the_figures_include_the_copy_just_archived(world, kind):
    keys = [k for k, c in world.truth.collections.items() if clean(c)][:2]
    assert len(keys) == 2, "the facility has fewer than 2 clean collections"
    location = world.location(kind, purge_watermark=50, purge_enabled=True)
    for key in keys:
        world.archive(key, location)
        shown = Location.objects.get(pk=location.pk)
        assert (shown.write_bytes, shown.read_bytes) == (on_disk(location, "write"),
                                                         on_disk(location, "read")) > (0, 0)

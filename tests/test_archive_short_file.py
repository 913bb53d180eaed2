"""A file whose size on disk is not the one OMERO records (an upload cut short) cannot
hold OMERO's bytes: the archive plan refuses its collection before writing anything, as
it refuses missing files, and the automatic archive leaves it out with a line in its
log instead of submitting an archive that fails every night (found by the chapter 13
story, tests/scenarios/test_usb_drives.py: one failure e-mail a night, for ever)."""
import pytest

from omero_storagemanager.engine.archiveplan import ArchiveError
from omero_storagemanager.models import Copy, Job
from omero_storagemanager.tasks.handle import log_dir_for
from tests.test_auto_archive import run_policy, world  # noqa: F401 (fixture)


def short_key(world):
    return world.key_where(lambda c: any("db_size" in f and not f["missing"]
                                         for f in c["files"]))


def test_a_collection_with_a_file_cut_short_is_refused_before_writing(world):
    key = short_key(world)
    location = world.location("hdd", name="USB")
    with pytest.raises(ArchiveError, match="differ in size from OMERO's record"):
        world.archive(key, location)
    assert not Copy.objects.filter(location=location).exists()
    backend = location.backend()
    assert not any(backend.write_root.iterdir())  # not even a partial bag


def test_the_automatic_archive_leaves_it_out_and_says_why(world):
    key = short_key(world)
    world.location("hdd", name="USB")  # current
    submitted = run_policy()
    assert key not in submitted and submitted  # the others are archived
    [job] = Job.objects.filter(kind="auto_archive")
    log = open(f"{job.log_dir or log_dir_for(job)}/job.log").read()
    assert f"{key}: not archived automatically:" in log and "differ in size" in log


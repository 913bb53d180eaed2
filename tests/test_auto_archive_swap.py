"""A full USB disk swapped for a new one (manual chapter 13): the automatic archive
copies to the new current disk only what no verified copy holds, not everything the full
disk holds already (found by the chapter's story, tests/scenarios/test_usb_drives.py:
the night after the swap archived every collection again, filling Drive-2 with Drive-1's
content)."""
from omero_storagemanager import preferences
from omero_storagemanager.engine.locations import make_current
from omero_storagemanager.models import Copy, Job
from omero_storagemanager.tasks.runner import run_job
from tests.test_archive import clean
from tests.test_auto_archive import replace_a_file, run_policy, world  # noqa: F401 (fixture)


def test_after_a_disk_swap_only_what_changed_goes_to_the_new_disk(world):
    key = world.key_where(lambda c: clean(c) and any(
        f["kind"] == "fileset_entry" and f["originalfile_id"] for f in c["files"]))
    owner = world.truth.collections[key]["owner_id"]
    preferences.set_many({"auto_archive_users": [owner]})
    drive1 = world.location("hdd", name="Drive-1")
    world.archive(key, drive1)
    drive2 = world.location("hdd", name="Drive-2")  # made current
    assert key not in run_policy()  # wholly on Drive-1: nothing to copy to Drive-2
    assert not Job.objects.filter(kind="archive").exists()

    replace_a_file(world, key)  # changed since: archived again, on the current disk
    assert key in run_policy()
    [job] = Job.objects.filter(kind="archive")
    assert run_job(job.pk) == Job.DONE, Job.objects.get(pk=job.pk).error
    assert Copy.objects.filter(location=drive2, state=Copy.VERIFIED).count() == 1
    Job.objects.filter(kind="archive").delete()
    make_current(drive1)  # and back: Drive-2 holds it all now
    assert key not in run_policy()

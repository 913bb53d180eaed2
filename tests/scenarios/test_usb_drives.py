"""The manual's chapter 13, "Archiving to removable USB drives", as a story that runs.

Drive-1 is mounted at /data/archive (here a folder of the test's; unmounting a disk is
renaming that folder away, mounting one is renaming its folder back). The admin sets the
app up as the chapter does, then nights pass: new Projects are archived at midnight, the
database is backed up, Drive-1 fills and is swapped for Drive-2, the admin purges what
is least accessed, users restore, one restore waits for Drive-1 to be connected again,
and the rest of a year passes quietly. Every step asserts what the admin and the users
see (API) and receive (e-mails). docs/scenario-usb-drives.md tells the same story for
an admin.
"""
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from omero_storagemanager.models import Job
from tests.scenarios.harness import (API, backups_listed, chapter_stage, night_one_bytes, ok,
                                     quiet_stretch, sha1_of)

ADMIN_MAIL = "storage-admin@example.org"
# Step 7 lets this many quiet days pass: 12 in the suite (ten backups kept need eleven
# nights), SM_STORY_REST_DAYS=330 for the rest of the year (docs/scenario-usb-drives.md
# gives the time it takes).
REST_DAYS = int(os.environ.get("SM_STORY_REST_DAYS", "12"))


@pytest.fixture
def stage(facility, app_db, tmp_path, monkeypatch, mailbox):
    with chapter_stage(facility, tmp_path, monkeypatch, mailbox) as running:
        yield running


class Disks:
    """USB disks and the one mount point: a disk is a folder, mounted when it is at the
    mount point, on the shelf otherwise."""

    def __init__(self, root):
        self.mount = Path(root, "data", "archive")
        self.shelf = Path(root, "shelf")
        self.shelf.mkdir(parents=True)
        self.mount.mkdir(parents=True)  # Drive-1, new and empty, is mounted
        self.mounted = "Drive-1"

    def unmount(self):
        os.rename(self.mount, self.shelf / self.mounted)
        self.mount.mkdir()  # the bare mount point
        self.mounted = None

    def mount_disk(self, name):
        assert self.mounted is None
        source = self.shelf / name
        if source.exists():
            self.mount.rmdir()
            os.rename(source, self.mount)
        # a new disk: the empty mount point stands for its empty file system
        self.mounted = name


def locations(stage):
    listed = ok(stage.admin().get(f"{API}admin/locations/"))["locations"]
    return {loc["name"]: loc for loc in listed}


def copies_on(detail):
    return {c["location"]["name"] for c in detail["copies"] if c["verified"]}


def least_accessed(stage, on=None):
    """The admin sorts the collections by last access (oldest first) and takes the
    first archived one whose copies are all on the drive `on` (any drive: None)."""
    listed = ok(stage.admin().get(f"{API}collections/", sort="last_access",
                                  per_page=500))["items"]
    for row in listed:
        if row["state"] != "archived":
            continue
        detail = state_of(stage, row["key"])
        if on is None or copies_on(detail) == {on}:
            return detail
    raise AssertionError(f"no archived collection on {on}")


def purge(stage, key, expect="done"):
    """The admin purges `key` from the Storage tab; the workers run it. Returns the job."""
    made = ok(stage.admin().post(f"{API}actions/", {"action": "purge",
                                                    "collections": [key]}), 202)
    stage.pass_until(stage.now() + timedelta(minutes=5))
    job = ok(stage.admin().get(f"{API}jobs/{made['job']['id']}/"))
    if expect:
        assert job["state"] == expect, job
    return job


def primary_sha1s(facility, key):
    found = {}
    for f in facility.truth.collections[key]["files"]:
        found[f["path"]] = sha1_of(f["path"]) if os.path.exists(f["path"]) else None
    return found


def state_of(stage, key, omename="ingrid"):
    return ok(stage.api(omename).get(f"{API}collections/{key}/"))


def test_chapter_13_archiving_to_removable_usb_drives(stage, facility):
    story_started = time.monotonic()
    admin = stage.admin()
    disks = Disks(stage.tmp_path)

    # -- 1. Drive-1 and the settings of chapter 13 ------------------------------------------
    archive_uid, archive_gid = stage.omero_user_and_group("archiver", "Archive")
    # Small enough to fill in a few nights: the first night's archive and about two
    # days of new imports.
    size = night_one_bytes(facility) + 12 * 2**20
    drive1 = ok(admin.post(f"{API}admin/locations/", {
        "name": "Drive-1", "type": "hdd", "mount": str(disks.mount),
        "max_bytes": size, "purge_watermark": 0, "purge_enabled": False,
        "current": True}), 201)["location"]
    assert drive1["current"] and drive1["purge_watermark"] == 0
    ok(admin.post(f"{API}admin/preferences/", {"values": {
        "admin_emails": [ADMIN_MAIL], "auto_archive_users": [],
        "auto_archive_min_age_hours": 1, "purge_rename": True,
        "archive_user_id": archive_uid, "archive_group_id": archive_gid}}))
    for kind, at in (("backup", "21:00"), ("sync", "21:30"), ("scan", "22:00"),
                     ("auto_archive", "00:00")):
        ok(admin.post(f"{API}admin/schedules/", {"kind": kind, "times": at}))
    schedules = ok(admin.get(f"{API}admin/schedules/"))["schedules"]
    assert {k: v["times"] for k, v in schedules.items() if v["times"]} == {
        "backup": ["21:00"], "sync": ["21:30"], "scan": ["22:00"], "auto_archive": ["00:00"]}

    # -- 2. nights pass: what is older than an hour at midnight is archived -----------------
    stage.pass_days(1)  # Tuesday 09:00
    listed = ok(stage.admin().get(f"{API}collections/", per_page=100))["items"]
    archived = {c["key"] for c in listed if c["state"] == "archived"}
    short = {k for k, c in facility.truth.collections.items()
             if any("db_size" in f and not f["missing"] for f in c["files"])}
    assert archived and not archived & short
    [auto] = stage.jobs(kind="auto_archive")
    log = ok(stage.admin().get(f"{API}jobs/{auto.pk}/log/"))
    for key in short:  # left out, and the admin reads why (no failure, no e-mail a night)
        assert f"{key}: not archived automatically" in str(log), log
    assert stage.failed_jobs() == []
    assert locations(stage)["Drive-1"]["used_bytes"] == night_one_bytes(facility)

    morning = stage.import_project("alice", n_files=3)  # Tuesday 09:00
    stage.pass_until(stage.now().replace(hour=23, minute=30))
    late = stage.import_project("bob", n_files=3)  # Tuesday 23:30: too young at midnight
    stage.pass_days(1)  # Wednesday 09:00
    assert state_of(stage, morning)["state"] == "archived"
    assert state_of(stage, late)["state"] == "online"
    stage.pass_days(1)  # Thursday 09:00
    assert state_of(stage, late)["state"] == "archived"
    assert state_of(stage, late, "bob")["state"] == "archived"  # and bob sees it so

    # The file server runs low: the admin purges the least accessed collection (its copy
    # is on Drive-1, connected now). Chapter 6 of this story restores it from Drive-1.
    early = least_accessed(stage, on="Drive-1")
    early_owner = early["owner"]["name"]
    purge(stage, early["key"])
    assert state_of(stage, early["key"])["state"] == "purged"

    # -- 3. Drive-1 fills ----------------------------------------------------------------------
    for day in range(6):
        stage.import_project("alice", n_files=3)
        stage.import_project("chloe", n_files=3)
        stage.pass_days(1)
        if stage.mails("is full"):
            break
    else:
        raise AssertionError(f"Drive-1 never filled: {locations(stage)['Drive-1']}")
    # The admin is told once that night: a warning naming the collections that wait for
    # room. The automatic archive started no job that would fail, and wrote nothing.
    assert stage.failed_jobs() == []
    [(to, text)] = stage.mails("Drive-1 is full")
    assert to == [ADMIN_MAIL] and "make it current" in text
    waiting_for_room = [line for line in text.splitlines()
                        if line.startswith(("Project:", "Screen:"))]
    assert waiting_for_room, text
    for key in waiting_for_room:
        detail = state_of(stage, key)  # not archived; nothing half-done
        assert (detail["state"], detail["copies"]) == ("online", []), detail
    [night] = [j for j in stage.jobs(kind="auto_archive") if j.summary.get("waiting_for_room")]
    seen = ok(stage.admin().get(f"{API}jobs/{night.pk}/"))
    assert seen["state"] == "done" and seen["summary"]["waiting_for_room"] == waiting_for_room
    drive1 = locations(stage)["Drive-1"]
    assert drive1["used_bytes"] <= drive1["max_bytes"]

    # The admin swaps the disks and makes Drive-2 current; the next night archives there.
    disks.unmount()
    disks.mount_disk("Drive-2")
    assert locations(stage)["Drive-1"]["online"] is False
    drive2 = ok(stage.admin().post(f"{API}admin/locations/", {
        "name": "Drive-2", "type": "hdd", "mount": str(disks.mount), "max_bytes": "1 TB",
        "purge_watermark": 0, "purge_enabled": False, "current": True}), 201)["location"]
    assert drive2["current"] and not locations(stage)["Drive-1"]["current"]
    failed_before = len(stage.failed_jobs())
    stage.pass_days(1)
    for key in waiting_for_room:
        detail = state_of(stage, key)
        assert detail["state"] == "archived", detail
        assert {c["location"]["name"] for c in detail["copies"]} == {"Drive-2"}
    assert len(stage.failed_jobs()) == failed_before, stage.failed_jobs()

    # -- 4. purging by last access; never without the copy there now ----------------------------
    oldest = least_accessed(stage)
    assert copies_on(oldest) == {"Drive-1"}  # the facility's oldest work is on Drive-1
    before = primary_sha1s(facility, oldest["key"])
    job = purge(stage, oldest["key"], expect=None)
    assert state_of(stage, oldest["key"])["state"] != "purged", job
    assert primary_sha1s(facility, oldest["key"]) == before  # every primary still there
    log = ok(stage.admin().get(f"{API}jobs/{job['id']}/log/"))
    assert job["summary"]["collections"][0]["freed_files"] == 0
    assert "Drive-1" in str(log), log  # the log names the drive the copy is on
    on_drive2 = least_accessed(stage, on="Drive-2")
    purge(stage, on_drive2["key"])
    owner = on_drive2["owner"]["name"]
    seen = {c["key"]: c for c in ok(stage.api(owner).get(f"{API}collections/",
                                                       per_page=500))["items"]}
    assert seen[on_drive2["key"]]["state"] == "purged"  # -- 5. the owner still sees it

    # -- 5. the owner asks for it back; the admin approves; it is theirs again ------------------
    asked = ok(stage.api(owner).post(f"{API}actions/", {
        "action": "request_restore", "collections": [on_drive2["key"]],
        "comment": "needed for the paper"}), 202)
    [request] = asked["requests"]
    stage.pass_until(stage.now() + timedelta(minutes=10))
    [(to, text)] = stage.mails(f"asks to restore {on_drive2['key']}")
    assert to == [ADMIN_MAIL] and "needed for the paper" in text
    ok(stage.admin().post(f"{API}requests/{request['id']}/approve/", {}))
    stage.pass_until(stage.now() + timedelta(minutes=10))
    detail = state_of(stage, on_drive2["key"], owner)
    assert detail["state"] == "archived", detail
    assert detail["owner"]["name"] == owner and not detail["name"].startswith("(archived)")
    [(to, _)] = stage.mails(f"restore done: {on_drive2['key']}")

    # -- 6. a restore from the disconnected Drive-1 waits for it ---------------------------------
    key = early["key"]
    asked = ok(stage.api(early_owner).post(f"{API}actions/", {
        "action": "request_restore", "collections": [key]}), 202)
    if "requests" in asked:  # a member asks; the admin approves
        [request] = asked["requests"]
        job_id = ok(stage.admin().post(f"{API}requests/{request['id']}/approve/",
                                       {}))["request"]["job"]
    else:  # a group owner restores their group's collections themselves
        job_id = asked["job"]["id"]
    stage.pass_until(stage.now() + timedelta(minutes=10))
    job = ok(stage.api(early_owner).get(f"{API}jobs/{job_id}/"))
    assert job["state"] == "waiting" and job["wait_kind"] == "medium", job
    assert "Drive-1" in job["wait_reason"] and "/" not in job["wait_reason"]  # no paths
    [(to, question)] = stage.mails(f"restore of {key} is waiting")
    assert to == [ADMIN_MAIL] and "Drive-1" in question and str(disks.mount) in question
    for day in range(1, 4):  # a reminder a day, never more often
        stage.pass_until(stage.now() + timedelta(days=1, minutes=1))
        reminders = stage.mails(f"reminder: restore of {key} still waiting")
        assert len(reminders) == day, stage.subjects()
    assert len(stage.mails(f"restore of {key} is waiting")) == 1
    assert ok(stage.admin().get(f"{API}jobs/{job_id}/"))["state"] == "waiting"

    disks.unmount()  # the admin connects Drive-1 again
    disks.mount_disk("Drive-1")
    stage.pass_until(stage.now() + timedelta(minutes=10))
    job = ok(stage.api(early_owner).get(f"{API}jobs/{job_id}/"))
    assert job["state"] == "done", job
    stage.wait_for_mail(f"restore of {key} no longer waiting")
    stage.wait_for_mail(f"restore done: {key}")
    truth = {f["path"]: f["hash"] for f in facility.truth.collections[key]["files"]
             if f["hasher"] == "SHA1-160"}
    assert truth and all(sha1_of(path) == digest for path, digest in truth.items())
    assert state_of(stage, key, early_owner)["state"] == "archived"
    disks.unmount()  # and Drive-2 back before the night's archive
    disks.mount_disk("Drive-2")

    # -- 7. the rest of the year: quiet -------------------------------------------------------
    stage.step = timedelta(days=1)
    with quiet_stretch(stage, REST_DAYS, story_started):
        stage.pass_until(stage.now() + timedelta(days=REST_DAYS))
    # A backup every night, ten kept besides the current one (`storagemanager backup list`).
    assert backups_listed() == ["current"] + [str(i) for i in range(10)]
    assert len(stage.jobs(kind="backup", state=Job.DONE)) >= REST_DAYS

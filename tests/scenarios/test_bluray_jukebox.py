"""The manual's chapter 15, "Archiving to a BluRay jukebox", as a story that runs.

The location "BluRay Archive" is an automated one: its cache disk is mounted at
/data/archive (a folder of the test's) and its XML orders go to /data/xml, where the
DAX FFA software (tests/scenarios/jukebox.py, the third party: it reads only the XML the
app writes) picks them up once an hour: an archive order is burned to two BluRay discs
(one stays in the jukebox, one is exported offline) and removed from write/; a restore
order is answered some hours later by copying the copy back from the jukebox's disc into
read/. The admin sets the app up as the chapter does, then nights pass: new Projects are
archived at midnight, the jukebox burns them, the read cache is purged down to its
watermark at 22:30, the database is backed up; the admin purges what is least accessed,
users restore it (at once from read/, or through a restore order the jukebox answers),
a disc cannot be read for weeks, and the rest of a year passes quietly. Every step
asserts what the admin and the users see (API) and receive (e-mails).
docs/scenario-bluray-jukebox.md tells the same story for an admin.
"""
import io
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command

from omero_storagemanager import settings
from omero_storagemanager.models import Job
from tests.api_support import point_app_at, standin_middleware
from tests.scenarios.harness import API, Stage, local, ok, sha1_of
from tests.scenarios.jukebox import Jukebox, same_tree
from tests.test_jobs import Mailbox

ADMIN_MAIL = "storage-admin@example.org"
# Step 7 lets this many quiet days pass (SM_STORY_REST_DAYS=330 for the rest of a year;
# the same variable as chapter 13's story).
REST_DAYS = int(os.environ.get("SM_STORY_REST_DAYS", "30"))
MiB = 2**20


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


class JukeboxStage(Stage):
    """The stage with the FFA software at work: it looks at its XML folder at each of the
    clock's steps (once an hour of the clock at most) before the app's workers run."""

    jukebox = None

    def tick(self):
        if self.jukebox is not None:
            self.jukebox.poll(self.now())
        super().tick()


@pytest.fixture
def stage(facility, app_db, tmp_path, monkeypatch, mailbox):
    point_app_at(facility, monkeypatch, tmp_path)
    # `omero config set omero.web.storagemanager.backups_kept 10` (chapter 15's "amount
    # of backups to keep online"); the rest is set on the admin pages below.
    monkeypatch.setattr(settings, "BACKUPS_KEPT", 10)
    with JukeboxStage(facility, tmp_path, mailbox, start=local(2027, 1, 4, 9, 0),
                      step=timedelta(hours=1)) as running, standin_middleware():
        yield running


def night_one_bytes(facility):
    """What the first night archives: every collection whose files are all there as
    OMERO records them (the test bed's truth)."""
    return sum(sum(f["size"] for f in c["files"])
               for c in facility.truth.collections.values()
               if c["files"] and not any(f["missing"] or "db_size" in f for f in c["files"]))


def location(stage, name="BluRay Archive"):
    listed = ok(stage.admin().get(f"{API}admin/locations/"))["locations"]
    [found] = [loc for loc in listed if loc["name"] == name]
    return found


def state_of(stage, key, omename="ingrid"):
    return ok(stage.api(omename).get(f"{API}collections/{key}/"))


def archived_by_access(stage):
    """The admin's list sorted by last access (least accessed first), archived only."""
    listed = ok(stage.admin().get(f"{API}collections/", sort="last_access",
                                  per_page=500))["items"]
    return [row for row in listed if row["state"] == "archived"]


def purge(stage, key):
    made = ok(stage.admin().post(f"{API}actions/", {"action": "purge",
                                                    "collections": [key]}), 202)
    stage.pass_until(stage.now() + timedelta(minutes=5))
    job = ok(stage.admin().get(f"{API}jobs/{made['job']['id']}/"))
    assert job["state"] == "done", job
    return job


def ask_restore(stage, owner, key):
    """`owner` asks for `key` back from the Storage tab; a member's request is approved
    by the admin. Returns the restore job's id."""
    asked = ok(stage.api(owner).post(f"{API}actions/", {
        "action": "request_restore", "collections": [key]}), 202)
    if "requests" in asked:
        [request] = asked["requests"]
        return ok(stage.admin().post(f"{API}requests/{request['id']}/approve/",
                                     {}))["request"]["job"]
    return asked["job"]["id"]


def truth_holds(facility, key):
    """Every primary file of `key` has the bytes OMERO's SHA-1 says (the test bed's truth)."""
    truth = {f["path"]: f["hash"] for f in facility.truth.collections[key]["files"]
             if f["hasher"] == "SHA1-160"}
    assert truth, key
    return all(os.path.exists(p) and sha1_of(p) == digest for p, digest in truth.items())


def bag_of(detail):
    [copy] = [c for c in detail["copies"] if c["verified"]]
    return copy


def test_chapter_15_archiving_to_a_bluray_jukebox(stage, facility):
    story_started = time.monotonic()
    admin = stage.admin()
    mount = Path(stage.tmp_path, "data", "archive")
    xml_folder = Path(stage.tmp_path, "data", "xml")
    mount.mkdir(parents=True)
    xml_folder.mkdir()
    jukebox = Jukebox(xml_folder, Path(stage.tmp_path, "bluray"))

    # -- 1. the location "BluRay Archive" and the settings of chapter 15 --------------------
    archive_uid, archive_gid = stage.omero_user_and_group("archiver", "Archive")
    night_one = night_one_bytes(facility)
    # The cache disk takes the first night twice (write/ and read/) and a few nights'
    # imports; the watermark keeps read/ at about three quarters of the first night, so
    # the 22:30 purge has work from the second night on.
    max_bytes = 2 * night_one + 48 * MiB
    watermark = 75 * night_one // max_bytes
    created = ok(admin.post(f"{API}admin/locations/", {
        "name": "BluRay Archive", "type": "automated", "mount": str(mount),
        "xml_folder": str(xml_folder), "max_bytes": max_bytes,
        "purge_watermark": watermark, "purge_enabled": True, "current": True}), 201)
    loc = created["location"]
    assert loc["type"] == "automated" and loc["current"] and loc["purge_enabled"]
    assert (mount / str(loc["id"]) / "write").is_dir() and (mount / str(loc["id"]) / "read").is_dir()
    write_root, read_root = mount / str(loc["id"]) / "write", mount / str(loc["id"]) / "read"
    limit = max_bytes * watermark // 100
    ok(admin.post(f"{API}admin/preferences/", {"values": {
        "admin_emails": [ADMIN_MAIL], "auto_archive_users": [],
        "auto_archive_min_age_hours": 1, "purge_rename": True,
        "archive_user_id": archive_uid, "archive_group_id": archive_gid}}))
    for kind, at in (("backup", "21:00"), ("sync", "21:30"), ("scan", "22:00"),
                     ("cache_purge", "22:30"), ("auto_archive", "00:00")):
        ok(admin.post(f"{API}admin/schedules/", {"kind": kind, "times": at}))
    schedules = ok(admin.get(f"{API}admin/schedules/"))["schedules"]
    assert {k: v["times"] for k, v in schedules.items() if v["times"]} == {
        "backup": ["21:00"], "sync": ["21:30"], "scan": ["22:00"], "cache_purge": ["22:30"],
        "auto_archive": ["00:00"]}
    stage.jukebox = jukebox  # FFA watches the XML folder from now on

    # -- 2. the first night: archived at midnight, an archive order per copy -----------------
    stage.pass_until(local(2027, 1, 5, 0, 30))
    orders = jukebox.orders("archive")
    listed = ok(admin.get(f"{API}collections/", per_page=500))["items"]
    archived = {c["key"] for c in listed if c["state"] == "archived"}
    assert archived and len(orders) == len(archived), (len(orders), len(archived))
    for name, order in orders:
        source = Path(order["SourceFolder"])
        assert source.parent.parent.parent.parent.parent == write_root, order
        assert order["OrderDescription"] == "$".join(source.relative_to(write_root).parts)
        assert (order["RemoveSource"], order["RemoveFolder"], order["RemoveXmlAfterFinish"],
                order["RemoveXmlAfterFailure"]) == ("true", "true", "true", "false")
        assert (source / "bagit.txt").is_file()
        assert same_tree(source, read_root / source.relative_to(write_root))
    assert jukebox.did("burned") == []
    # -- 3. FFA burns them within the hour; write/ empties, read/ stays ---------------------
    stage.pass_until(local(2027, 1, 5, 9, 0))
    assert jukebox.orders("archive") == []
    assert sorted(jukebox.did("burned")) == sorted(o["OrderDescription"] for _, o in orders)
    for _, order in orders:
        description = order["OrderDescription"]
        cached = read_root / description.replace("$", "/")
        assert not Path(order["SourceFolder"]).exists()
        assert same_tree(cached, jukebox.in_jukebox / description)
        assert same_tree(cached, jukebox.offline / description)
    assert stage.failed_jobs() == []
    print(f"night one: {night_one / MiB:.1f} MiB, {len(archived)} collections, "
          f"story {time.monotonic() - story_started:.1f} s; {stage.time_spent()}; {stage.overhead}")

"""The JSON API through the real URLs and middleware: the collections list against the
Collection table (paging, every sort, quick and rule filters), strict input checking
(hostile input gives 400 or an empty answer, never a 500), actions and their conflicts,
the approval workflow with its e-mails, the plugins' endpoints and the admin API.
"""
import random
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from django.test import RequestFactory, override_settings
from django.urls import resolve

from omero_storagemanager import preferences
from omero_storagemanager.backends.base import MARKER
from omero_storagemanager.models import Collection, Copy, Job, Location, Quota, Request
from omero_storagemanager.views.listing import SORTS
from testbed.standin import StandInGateway
from tests.api_support import (CSRF, Api, data, disk_location, point_app_at, standin_middleware, sync,
                               user_ids)

API = "/storagemanager/api/v1/"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def world(facility, app_db, monkeypatch, tmp_path):
    point_app_at(facility, monkeypatch, tmp_path)
    sync(facility)
    ids = user_ids(facility)
    apis = {}

    def api(name):
        if name not in apis:
            apis[name] = Api(None if name is None else ids[name])
        return apis[name]

    with standin_middleware():
        yield ids, api, tmp_path


def _location(tmp_path, name="disk", current=True):
    assert not (tmp_path / name).exists()
    return disk_location(tmp_path / name, name=name, current=current)


def _synthetic(count=130, seed=7):
    """Collections with varied figures, all named "synthetic NNNN" (sortable the same
    way in any collation), owned by the admin (id 0) so only admins see them all."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        day = NOW - timedelta(days=rng.randint(0, 3000))
        rows.append(Collection(
            kind=rng.choice(["project", "screen"]), omero_id=10_000 + i, name=f"synthetic {i:04d}",
            owner_id=0, owner_name=f"owner-{'abc'[i % 3]}", group_id=0,
            group_name=f"group-{'xy'[i % 2]}",
            state=rng.choice(["online", "online", "archived", "purged", "partially_purged"]),
            files=rng.randint(0, 5000), images=rng.randint(0, 50),
            bytes=rng.choice([0, rng.randint(1, 10**9), rng.randint(10**11, 10**12)]),
            newest_file=None if i % 11 == 0 else day,
            last_access=None if i % 7 == 0 else day + timedelta(days=rng.randint(0, 300)),
            scanned_at=None if i % 5 == 0 else NOW - timedelta(hours=i),
            created=day))
    made = Collection.objects.bulk_create(rows)
    location = Location.objects.create(name="bench", type="hdd", mount="/tmp", max_bytes=10**12)
    for c in made[::4]:
        Copy.objects.create(collection=c, location=location, bag_path=f"b{c.pk}",
                            state=Copy.VERIFIED, created=NOW, bytes=c.bytes // 2 + 1)
    # Display states that come from jobs and requests.
    for c, state in zip(made[1:40:9], [Job.RUNNING, Job.QUEUED, Job.FAILED, Job.WAITING,
                                       Job.CANCELLED]):
        job = Job.objects.create(kind="scan", state=state)
        job.collections.set([c])
    Request.objects.create(kind="archive", collection=made[50], requested_by_id=2)
    return Collection.objects.filter(name__startswith="synthetic ")


def _expected_rows():
    """What the list should say of each synthetic collection, computed in Python."""
    rows = {}
    for c in Collection.objects.filter(name__startswith="synthetic "):
        jobs = [j for j in Job.objects.filter(collections=c).order_by("-pk")
                if j.state != Job.CANCELLED]
        latest = jobs[0].state if jobs else None
        pending = Request.objects.filter(collection=c, state=Request.PENDING).exists()
        state = ("running" if latest == Job.RUNNING else
                 "waiting" if latest in (Job.QUEUED, Job.WAITING) or pending else
                 "failed" if latest == Job.FAILED else c.state)
        archived = sum(x.bytes for x in Copy.objects.filter(collection=c, state=Copy.VERIFIED))
        rows[c.key] = {"pk": c.pk, "name": c.name, "kind": c.kind, "id": c.omero_id,
                       "owner": c.owner_name, "group": c.group_name, "state": state,
                       "files": c.files, "images": c.images, "size": c.bytes,
                       "archived": archived, "newest": c.newest_file,
                       "last_access": c.last_access, "last_scan": c.scanned_at,
                       "created": c.created}
    return rows


def _all_pages(api, per_page=50, **params):
    keys, page = [], 1
    while True:
        answer = data(api.get(API + "collections/", per_page=per_page, page=page, **params))
        keys += [item["key"] for item in answer["items"]]
        if page >= answer["pages"]:
            return keys, answer
        page += 1


# -- the list against the table -----------------------------------------------------------

def test_every_sort_and_paging_match_the_collection_table(world):
    ids, api, _ = world
    _synthetic()
    expected = _expected_rows()
    admin = api("ingrid")
    for sort in SORTS:
        for descending in (False, True):
            keys, answer = _all_pages(admin, per_page=37, q="synthetic",
                                      sort=("-" if descending else "") + sort)
            present = [k for k in expected if expected[k][sort] is not None]
            missing = [k for k in expected if expected[k][sort] is None]
            order = sorted(present, key=lambda k: (expected[k][sort], expected[k]["pk"]),
                           reverse=descending)
            order += sorted(missing, key=lambda k: expected[k]["pk"], reverse=descending)
            assert keys == order, f"sort {'-' if descending else ''}{sort}"
            assert answer["total"] == len(expected) and answer["pages"] == -(-len(expected) // 37)


def test_rows_carry_display_state_archived_size_and_actions(world):
    ids, api, _ = world
    _synthetic()
    expected = _expected_rows()
    items = {i["key"]: i for i in data(api("ingrid").get(
        API + "collections/", q="synthetic", per_page=500))["items"]}
    assert set(items) == set(expected)
    for key, row in items.items():
        assert row["state"] == expected[key]["state"]
        assert row["archived_bytes"] == expected[key]["archived"]
        assert row["bytes"] == expected[key]["size"]
        assert "scan" in row["actions"]
    assert {r["state"] for r in items.values()} >= {"running", "waiting", "failed", "online"}


RULES = [
    ("size above 100 GB", lambda r: r["size"] > 100 * 1024**3),
    ("size below 1 KB", lambda r: r["size"] < 1024),
    ("last access before 2024-01-01",
     lambda r: r["last_access"] is not None
     and r["last_access"] < datetime(2024, 1, 1, tzinfo=timezone.utc)),
    ("state is purged", lambda r: r["state"] == "purged"),
    ("state is not online", lambda r: r["state"] != "online"),
    ("state is partially purged", lambda r: r["state"] == "partially_purged"),
    ("state is waiting", lambda r: r["state"] == "waiting"),
    ("owner is OWNER-B", lambda r: r["owner"] == "owner-b"),
    ('name contains "0007"', lambda r: "0007" in r["name"]),
    ("group starts with group-x", lambda r: r["group"] == "group-x"),
    ("files at least 2500", lambda r: r["files"] >= 2500),
    ("images = 7", lambda r: r["images"] == 7),
    ("last scan is never", lambda r: r["last_scan"] is None),
    ("newest file is not never", lambda r: r["newest"] is not None),
    ("archived size above 0", lambda r: r["archived"] > 0),
    ("kind is screen", lambda r: r["kind"] == "screen"),
    ("created on 2020-01-15",
     lambda r: r["created"].date() == datetime(2020, 1, 15).date()),
]


@pytest.mark.parametrize("rule,keep", RULES, ids=[r for r, _ in RULES])
def test_rule_filters(world, rule, keep):
    ids, api, _ = world
    _synthetic()
    expected = {k for k, r in _expected_rows().items() if keep(r)}
    keys, _ = _all_pages(api("ingrid"), per_page=500, q="synthetic", rule=rule)
    assert set(keys) == expected


def test_rules_combine_and_relative_dates(world):
    ids, api, _ = world
    _synthetic()
    rows = _expected_rows()
    cutoff = datetime.now(timezone.utc) - timedelta(days=365)
    keys, _ = _all_pages(api("ingrid"), per_page=500, q="synthetic",
                         rule=["kind is project", "newest file before 365 days ago"])
    expected = {k for k, r in rows.items() if r["kind"] == "project" and r["newest"]
                and r["newest"] < datetime.combine(cutoff.date(), datetime.min.time(),
                                                   tzinfo=timezone.utc)}
    assert set(keys) == expected


def test_quick_filter_by_id_name_owner_and_group(world):
    ids, api, _ = world
    admin = api("ingrid")

    def keys(q):
        return {i["key"] for i in data(admin.get(API + "collections/", q=q, per_page=500))["items"]}

    assert keys("Project:4") == {"Project:4"}
    assert keys("screen:2") == {"Screen:2"}
    assert "Project:4" in keys("4")
    assert keys("CHLOE") == {"Project:4"}
    assert keys("o'brien") == {"Project:1"}  # group name, and a quote in the filter
    assert keys("färbung") == {"Project:2", "Project:4"}
    assert keys("HCS Screening") == {"Screen:1", "Screen:2", "Screen:3", "Project:8"}


def test_each_user_lists_exactly_what_access_allows(world):
    ids, api, _ = world
    seen = {}
    for name in ("alice", "bob", "chloe", "eve", "farid", "ingrid"):
        keys, _ = _all_pages(api(name), per_page=500)
        seen[name] = set(keys)
    assert seen["ingrid"] == {c.key for c in Collection.objects.filter(gone=False)}
    assert "Project:1" not in seen["chloe"]  # eve's, private group
    assert "Project:1" in seen["eve"]
    assert seen["chloe"] >= {"Project:2", "Project:3", "Project:4"}  # read-annotate group
    assert all(k.startswith("Screen") or k == "Project:8" for k in seen["farid"])


BAD = [
    {"sort": "colour"}, {"sort": "name; DROP TABLE storagemanager_collection"},
    {"sort": "--name"}, {"page": "0"}, {"page": "-1"}, {"page": "1.5"}, {"page": "abc"},
    {"per_page": "100000"}, {"per_page": "0"}, {"kind": "dataset"},
    {"rule": "size above lots"}, {"rule": "colour is red"}, {"rule": "state is deleted"},
    {"rule": "last access before yesterday"}, {"rule": "last access before 2024-13-45"},
    {"rule": ""}, {"rule": "x" * 300}, {"rule": ["kind is project"] * 11},
    {"rule": "size above"}, {"rule": "name is"}, {"rule": "last scan is never 5"},
    {"rule": "files above 1e9"}, {"rule": "size above 99999999999999999999 PB"},
    {"q": "x" * 300}, {"q": "bad\x00byte"},
]


@pytest.mark.parametrize("params", BAD, ids=[repr(p)[:40] for p in BAD])
def test_bad_list_parameters_are_refused_with_a_message(world, params):
    ids, api, _ = world
    response = api("alice").get(API + "collections/", **params)
    assert response.status_code == 400
    assert data(response)["error"]


HOSTILE = [
    "' OR '1'='1", "1; DROP TABLE storagemanager_collection; --", "%", "_", "\\", "%' --",
    "\" OR \"\"=\"", "name) OR 1=1 --", "${7*7}", "{{7*7}}", "<script>alert(1)</script>",
    "ünïcödé ✓ 漢字", "\u202e", "NULL", "-1", "9" * 40, "Project:99999999999999999999",
    "project:1 OR 1=1", "\n\r\t", "'; SELECT pg_sleep(5); --", "\x00",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_never_breaks_an_endpoint(world, text):
    ids, api, _ = world
    user = api("alice")
    before = Collection.objects.count()
    calls = [
        ("collections/", {"q": text}), ("collections/", {"sort": text}),
        ("collections/", {"page": text}), ("collections/", {"per_page": text}),
        ("collections/", {"kind": text}), ("collections/", {"rule": text}),
        ("collections/", {"rule": f"name contains {text}"}),
        ("collections/", {"rule": f"owner is '{text}'"}),
        ("collections/", {"rule": f"size above {text}"}),
        ("collections/", {"rule": f"last access before {text}"}),
        ("breakdown/", {"objects": text}), ("jobs/", {"state": text}),
        ("jobs/", {"page": text}), ("requests/", {"state": text}),
    ]
    for path, params in calls:
        response = user.get(API + path, **params)
        assert response.status_code in (200, 400, 404), (path, params, response.content[:200])
        body = data(response)
        assert ("error" in body) == (response.status_code != 200)
    for body in ({"action": text, "collections": ["Project:2"]},
                 {"action": "scan", "collections": [text]},
                 {"action": "scan", "collections": text},
                 {"action": "request_archive", "collections": ["Project:2"], "comment": text}):
        response = user.post(API + "actions/", body)
        assert response.status_code in (202, 400, 403, 404, 409), (body, response.content[:200])
    response = user.get(f"{API}collections/{text}/")
    assert response.status_code in (400, 404)
    assert Collection.objects.count() == before


# -- actions ---------------------------------------------------------------------------

def test_actions_refuse_what_cannot_be_done_now(world):
    ids, api, tmp_path = world
    alice = api("alice")  # owns Cell Biology: manages Project:2, 3, 4

    def act(action, *keys, **extra):
        return alice.post(API + "actions/", {"action": action, "collections": list(keys), **extra})

    assert act("archive", "Project:2").status_code == 409  # no current location yet
    assert "location" in data(act("archive", "Project:2"))["error"]
    _location(tmp_path)
    assert act("restore", "Project:2").status_code == 409  # online: nothing to restore
    assert "has no verified copy" in data(act("purge", "Project:2"))["error"]
    assert act("archive", "Project:2", "Project:3").status_code == 202
    assert act("archive", "Project:3").status_code == 409  # its archive job is queued
    assert act("scan", "Project:3", mode="verify").status_code == 202  # another kind queues
    assert act("scan", "Project:2", mode="deep").status_code == 400
    assert act("scan").status_code == 400
    assert act("scan", "Project:999").status_code == 404
    assert act("scan", "Project:1").status_code == 404  # eve's: alice may not see it
    assert act("scan", "Dataset:2").status_code == 400
    assert act("explode", "Project:2").status_code == 400
    assert act("scan", *[f"Project:{i}" for i in range(501)]).status_code == 400
    assert act("purge", "Project:5").status_code == 403  # bob's, in a group alice only joins
    Collection.objects.filter(kind="project", omero_id=4).update(gone=True)
    assert "deleted in OMERO" in data(act("scan", "Project:4"))["error"]
    job = Job.objects.filter(kind="archive").get()
    assert sorted(c.key for c in job.collections.all()) == ["Project:2", "Project:3"]
    assert (job.requested_by_id, job.requested_by_name) == (ids["alice"], "alice")
    assert job.location.name == "disk"
    body = alice.client.post(API + "actions/", "not json", content_type="application/json",
                             HTTP_X_CSRFTOKEN=CSRF)
    assert body.status_code == 400 and "JSON" in data(body)["error"]
    assert alice.get(API + "actions/").status_code == 405


def test_approval_workflow_with_emails(world, facility):
    from tests.test_jobs import Mailbox

    ids, api, tmp_path = world
    _location(tmp_path)
    box = Mailbox()
    try:
        with override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=box.port):
            preferences.set_many({"admin_emails": ["storage@example.org"]})
            chloe, alice, bob = api("chloe"), api("alice"), api("bob")
            asked = chloe.post(API + "actions/", {"action": "request_archive",
                                                  "collections": ["Project:4"],
                                                  "comment": "finished, please archive"})
            assert asked.status_code == 202, asked.content
            [made] = data(asked)["requests"]
            assert made["state"] == "pending" and made["requested_by"]["name"] == "chloe"
            box.wait_for("chloe asks to archive Project:4")
            again = chloe.post(API + "actions/", {"action": "request_archive",
                                                  "collections": ["Project:4"]})
            assert again.status_code == 409
            row = next(i for i in data(chloe.get(API + "collections/", q="Project:4"))["items"])
            assert row["state"] == "waiting"  # a pending request shows in the list
            pending = data(alice.get(API + "requests/"))["items"]
            assert [(r["id"], r["may_decide"]) for r in pending] == [(made["id"], True)]
            assert data(chloe.get(API + "requests/"))["items"][0]["may_decide"] is False
            assert bob.post(f"{API}requests/{made['id']}/approve/").status_code == 404
            assert chloe.post(f"{API}requests/{made['id']}/approve/").status_code == 403
            approved = alice.post(f"{API}requests/{made['id']}/approve/", {"comment": "ok"})
            assert approved.status_code == 200, approved.content
            request = Request.objects.get(pk=made["id"])
            assert request.state == Request.APPROVED and request.decided_by_id == ids["alice"]
            job = request.job
            assert job.kind == "archive" and job.requested_by_id == ids["chloe"]
            assert job.requested_by_name == "chloe"
            [(to, text)] = box.wait_for("archive of Project:4 approved")
            chloe_email = next(u["email"] for u in facility.truth.users.values()
                               if u["omename"] == "chloe")
            assert chloe_email in to
            assert alice.post(f"{API}requests/{made['id']}/decline/").status_code == 409
            # A restore request, declined.
            Collection.objects.filter(kind="project", omero_id=4).update(state="purged")
            Job.objects.all().update(state=Job.DONE)
            asked = chloe.post(API + "actions/", {"action": "request_restore",
                                                  "collections": ["Project:4"]})
            [made] = data(asked)["requests"]
            declined = alice.post(f"{API}requests/{made['id']}/decline/", {"comment": "no room"})
            assert data(declined)["request"]["state"] == "declined"
            box.wait_for("restore of Project:4 declined")
            # Approval off: the owner's request runs at once.
            preferences.set_many({"require_approval": False})
            direct = chloe.post(API + "actions/", {"action": "request_restore",
                                                   "collections": ["Project:4"]})
            assert direct.status_code == 202 and data(direct)["job"]["kind"] == "restore"
    finally:
        box.stop()


# -- plugins ---------------------------------------------------------------------------

def test_objects_name_the_collections_that_hold_them(world):
    ids, api, _ = world
    admin, chloe = api("ingrid"), api("chloe")
    beads = data(admin.get(API + "objects/dataset/8/"))  # linked into two projects
    assert beads["object"]["name"] == "Calibration beads"
    assert {c["key"] for c in beads["collections"]} == {"Project:5", "Project:6"}
    assert "stored as part of" in beads["note"]
    plate = data(admin.get(API + "objects/plate/2/"))  # a plate in two screens
    assert {c["key"] for c in plate["collections"]} == {"Screen:1", "Screen:2"}
    project = data(chloe.get(API + "objects/project/2/"))
    [detail] = project["collections"]
    assert detail["shared_with"] == [{"key": "Project:3", "name": "Mitochondria live imaging"}]
    assert detail["actions"] == []  # chloe sees alice's project, may not act on it
    assert admin.get(API + "objects/dataset/999999/").status_code == 404
    assert admin.get(API + "objects/folder/1/").status_code == 400
    assert chloe.get(API + "objects/dataset/1/").status_code == 404  # private group
    # A Project created in OMERO since the last sync: a GET names it and changes nothing,
    # a POST learns it.
    Collection.objects.filter(kind="project", omero_id=6).delete()
    looked = data(admin.get(API + "objects/project/6/"))
    assert looked["collections"] == [] and looked["unknown"] == ["Project:6"]
    assert not Collection.objects.filter(kind="project", omero_id=6).exists()
    assert [c["key"] for c in data(admin.post(API + "objects/project/6/"))["collections"]] == \
        ["Project:6"]


def test_breakdown_per_dataset_and_plate(world, facility):
    ids, api, _ = world
    answer = data(api("alice").get(API + "breakdown/", objects="dataset-2,project-3"))
    by_key = {c["key"]: c for c in answer["collections"]}
    assert set(by_key) == {"Project:2", "Project:3"}
    rows = {r["name"]: r for r in by_key["Project:2"]["children"]}
    assert set(rows) == {"Tag 1", "Tag 2", "Attachments and other files"}
    assert rows["Attachments and other files"]["bytes"] == 183_211  # the protocol PDF
    truth = facility.truth.collections["Project:2"]
    total = sum(f["size"] for f in truth["files"])
    assert max(r["bytes"] for r in rows.values()) < total <= sum(r["bytes"] for r in rows.values())
    screens = data(api("ingrid").get(API + "breakdown/", objects="screen-2"))["collections"]
    assert [r["type"] for r in screens[0]["children"]] == ["plate", "plate"]
    assert api("ingrid").get(API + "breakdown/").status_code == 400
    assert api("ingrid").get(API + "breakdown/", objects="project-1," * 21).status_code == 400


# -- jobs ------------------------------------------------------------------------------

def test_job_log_viewer(world, tmp_path):
    ids, api, _ = world
    c = Collection.objects.get(kind="project", omero_id=4)
    log_dir = tmp_path / "joblog"
    log_dir.mkdir()
    (log_dir / "job.log").write_text("x" * 300_000 + "\nthe end\n")
    (log_dir / "errors.txt").write_text("one error\n")
    job = Job.objects.create(kind="scan", state=Job.DONE, log_dir=str(log_dir),
                             requested_by_id=ids["chloe"], requested_by_name="chloe")
    job.collections.set([c])
    alice = api("alice")
    log = data(alice.get(f"{API}jobs/{job.pk}/log/"))
    assert log["truncated"] and log["text"].endswith("the end\n") and len(log["text"]) <= 256 * 1024
    assert data(alice.get(f"{API}jobs/{job.pk}/log/", file="errors.txt"))["text"] == "one error\n"
    assert data(alice.get(f"{API}jobs/{job.pk}/log/", file="files.txt"))["text"] == ""
    for sneaky in ("../../../etc/passwd", "/etc/passwd", "job.log/..", "..", "job.log\x00"):
        assert alice.get(f"{API}jobs/{job.pk}/log/", file=sneaky).status_code == 400
    listed = data(api("chloe").get(API + "jobs/"))["items"]
    assert [(j["id"], j["may_read_log"], j["may_cancel"]) for j in listed] == \
        [(job.pk, False, False)]
    assert "log_dir" not in listed[0]
    assert "log_dir" in data(api("ingrid").get(f"{API}jobs/{job.pk}/"))


def test_statistics_show_each_user_what_they_may_see(world):
    ids, api, _ = world
    Quota.objects.create(scope="user", omero_id=None, max_bytes=1024)
    everyone = data(api("ingrid").get(API + "statistics/"))
    assert {u["name"] for u in everyone["users"]} >= {"alice", "bob", "chloe", "eve"}
    assert any(u["over_quota"] for u in everyone["users"])
    assert everyone["timeline"][-1]["cumulative_bytes"] == sum(
        c.bytes for c in Collection.objects.filter(gone=False, created__isnull=False))
    chloe = data(api("chloe").get(API + "statistics/"))
    assert [u["name"] for u in chloe["users"]] == ["chloe"]
    assert {g["name"] for g in chloe["groups"]} <= {"Cell Biology", "O'Brien Lab", "user"}
    alice = data(api("alice").get(API + "statistics/"))  # owns Cell Biology: its members
    assert {u["name"] for u in alice["users"]} == {"alice", "bob", "chloe"}
    usage = data(api("chloe").get(API + "usage/"))["user"]
    assert usage["name"] == "chloe" and usage["quota_bytes"] == 1024 and usage["over_quota"]


# -- admin -----------------------------------------------------------------------------

def test_admin_locations(world, tmp_path):
    ids, api, _ = world
    admin = api("ingrid")
    mount = tmp_path / "disk2"
    mount.mkdir()
    added = admin.post(API + "admin/locations/", {"name": "Disk 2", "type": "hdd",
                                                   "mount": str(mount), "max_bytes": "2 TB",
                                                   "current": True})
    assert added.status_code == 201, added.content
    location = Location.objects.get(name="Disk 2")
    assert location.max_bytes == 2 * 1024**4 and location.current
    assert all((mount / str(location.pk) / sub).is_dir() for sub in ("read", "write"))
    for body, status, text in [
            ({"name": "Disk 2", "type": "hdd", "mount": str(mount), "max_bytes": 5}, 409, "exists"),
            ({"name": "x", "type": "hdd", "mount": str(tmp_path / "nope"), "max_bytes": 5}, 400,
             "does not exist"),
            ({"name": "x", "type": "floppy", "mount": str(mount), "max_bytes": 5}, 400, "type"),
            ({"name": "x", "type": "hdd", "mount": str(mount), "max_bytes": "huge"}, 400, "size"),
            ({"name": "x", "type": "hdd", "mount": "/", "max_bytes": 5}, 400, "root"),
            ({"name": "x", "type": "hdd", "mount": str(mount)}, 400, "max_bytes"),
            ({"name": "x", "type": "hdd", "mount": str(mount), "max_bytes": 5, "hack": 1}, 400,
             "unknown"),
            ({"name": "x", "type": "automated", "mount": str(mount), "max_bytes": 5}, 400, "XML")]:
        answer = admin.post(API + "admin/locations/", body)
        assert answer.status_code == status and text in data(answer)["error"], answer.content
    edit = f"{API}admin/locations/{location.pk}/"
    renamed = data(admin.post(edit, {"name": "Disk two", "max_bytes": "3 TB"}))["location"]
    assert renamed["name"] == "Disk two"
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert admin.post(edit, {"mount": str(other)}).status_code == 409  # no <id>/ there
    for sub in ("read", "write"):
        (other / str(location.pk) / sub).mkdir(parents=True)
    # The disk moved: its marker (backends/base.py MARKER) comes with it.
    shutil.copy2(mount / str(location.pk) / MARKER, other / str(location.pk) / MARKER)
    assert admin.post(edit, {"mount": str(other)}).status_code == 200
    assert admin.post(edit, {"type": "tape"}).status_code == 400
    assert admin.post(edit, {"purge_watermark": 101}).status_code == 400
    assert admin.post(edit, {"purge_watermark": 0, "purge_enabled": True}).status_code == 400
    assert admin.post(f"{API}admin/locations/99999/current/").status_code == 404
    listed = data(admin.get(API + "admin/locations/"))["locations"]
    assert [(l["name"], l["online"], l["current"]) for l in listed] == [("Disk two", True, True)]


def test_admin_preferences_schedules_and_quotas(world):
    ids, api, _ = world
    admin = api("ingrid")
    url = API + "admin/preferences/"
    bad = admin.post(url, {"values": {"purge_rename": True, "visibility": "everyone"}})
    assert bad.status_code == 400 and "visibility" in data(bad)["error"]
    assert preferences.get("purge_rename") is False  # all or nothing
    assert admin.post(url, {"values": {"nonsense": 1}}).status_code == 400
    good = data(admin.post(url, {"values": {"visibility": "own", "notify": ["error"]}}))
    assert good["preferences"]["visibility"]["value"] == "own"
    assert preferences.get("notify") == ["error"]
    schedules = API + "admin/schedules/"
    assert data(admin.post(schedules, {"kind": "scan", "times": "23:00, 01:30"}))[
        "schedules"]["scan"]["times"] == ["01:30", "23:00"]
    assert admin.post(schedules, {"kind": "scan", "times": "25:00"}).status_code == 400
    assert admin.post(schedules, {"kind": "purge", "times": "01:00"}).status_code == 400
    assert admin.post(API + "admin/schedules/purge/run/").status_code == 404
    run = admin.post(API + "admin/schedules/backup/run/")
    assert run.status_code == 202 and Job.objects.get(pk=data(run)["job"]["id"]).kind == "backup"
    quotas = API + "admin/quotas/"
    admin.post(quotas, {"scope": "group", "omero_id": None, "max_bytes": "5 TB"})
    admin.post(quotas, {"scope": "user", "omero_id": ids["alice"], "max_bytes": 1000})
    answer = data(admin.get(quotas))
    assert {(q["scope"], q["omero_id"], q["max_bytes"]) for q in answer["quotas"]} == {
        ("group", None, 5 * 1024**4), ("user", ids["alice"], 1000)}
    assert "alice" in {u["name"] for u in answer["people"]["users"]}
    admin.post(quotas, {"scope": "user", "omero_id": ids["alice"], "max_bytes": None})
    assert Quota.objects.filter(scope="user").count() == 0
    for body in ({"scope": "world", "max_bytes": 1}, {"scope": "user", "omero_id": "me",
                                                      "max_bytes": 1},
                 {"scope": "user", "omero_id": 3}, {"scope": "user", "max_bytes": -5}):
        assert admin.post(quotas, body).status_code == 400


class ClaimsAdmin(StandInGateway):
    """A plain user's gateway that claims to be an admin everywhere except is_admin()."""

    admin = True
    isAdmin = staticmethod(lambda: True)  # noqa: N815 (BlitzGateway's spelling)

    def getEventContext(self):  # noqa: N802
        return type("EventContext", (), {"isAdmin": True, "memberOfGroups": [0]})()


class TruthyAdmin(StandInGateway):
    def is_admin(self):
        return "yes"  # truthy, but not True


ADMIN_URLS = [("GET", "/storagemanager/admin/"), ("GET", "/storagemanager/admin/locations/"),
              ("GET", API + "admin/preferences/"), ("POST", API + "admin/preferences/"),
              ("GET", API + "admin/locations/"), ("POST", API + "admin/locations/"),
              ("POST", API + "admin/locations/1/"), ("POST", API + "admin/locations/1/remove/"),
              ("GET", API + "admin/quotas/"), ("POST", API + "admin/quotas/"),
              ("GET", API + "admin/schedules/"), ("POST", API + "admin/schedules/sync/run/"),
              ("POST", API + "admin/test-email/")]


@pytest.mark.parametrize("gateway_class", [ClaimsAdmin, TruthyAdmin])
def test_admin_endpoints_trust_only_the_gateways_is_admin(world, facility, gateway_class):
    ids, api, _ = world
    conn = gateway_class(facility.dsn, ids["chloe"])
    for method, path in ADMIN_URLS:
        match = resolve(path)
        factory = RequestFactory()
        request = factory.get(path) if method == "GET" else factory.post(
            path, "{}", content_type="application/json")
        response = match.func(request, *match.args, conn=conn, **match.kwargs)
        assert response.status_code == 403, (method, path, response.status_code)
    assert Location.objects.count() == 0 and not Job.objects.exists()

"""A request's whole life as its requester sees it (issue 22): pending, then declined
with the reason, withdrawn, or approved and followed to its job's end; the buttons say
why they are off (a request waiting, no verified copy); managers see a pending count in
the tab header; an e-mail is promised only when a mail server is configured."""
from django.test import override_settings
from django.utils import timezone

from omero_storagemanager import preferences
from omero_storagemanager.models import Collection, Copy, Job, Request
from tests.api_support import data
from tests.test_api import API, _location, world  # noqa: F401 (the fixture)


def _row(api, key):
    [row] = [r for r in data(api.get(API + "collections/", q=key))["items"] if r["key"] == key]
    return row


def _purge(key):
    kind, oid = key.split(":")
    Collection.objects.filter(kind=kind.lower(), omero_id=int(oid)).update(state="purged")


def test_requester_follows_each_fate_and_withdraws(world):  # noqa: F811
    ids, api, tmp_path = world
    _location(tmp_path)
    chloe, alice = api("chloe"), api("alice")
    _purge("Project:4")
    assert "request_restore" not in _row(chloe, "Project:4")["disabled"]

    asked = chloe.post(API + "actions/", {"action": "request_restore",
                                          "collections": ["Project:4"], "comment": "paper"})
    assert asked.status_code == 202, asked.content
    [made] = data(asked)["requests"]
    assert made["fate"] == "pending"
    row = _row(chloe, "Project:4")
    assert "waiting for approval" in row["disabled"]["request_restore"]
    assert [r["id"] for r in row["pending_requests"]] == [made["id"]]
    detail = data(chloe.get(API + "collections/Project:4/"))
    assert detail["requests"][0]["fate"] == "pending"

    mine = data(chloe.get(API + "requests/", state="all", mine="1"))
    assert [(r["id"], r["fate"], r["may_withdraw"]) for r in mine["items"]] == \
        [(made["id"], "pending", True)]
    # Only the requester withdraws; the owner decides instead.
    theirs = data(alice.get(API + "requests/"))["items"]
    assert [r["may_withdraw"] for r in theirs] == [False]
    assert alice.post(f"{API}requests/{made['id']}/withdraw/").status_code == 403
    assert chloe.post(f"{API}requests/{made['id']}/withdraw/", csrf=False).status_code == 403

    withdrawn = chloe.post(f"{API}requests/{made['id']}/withdraw/")
    assert withdrawn.status_code == 200, withdrawn.content
    assert data(withdrawn)["request"]["fate"] == "withdrawn"
    assert Request.objects.get(pk=made["id"]).state == Request.WITHDRAWN
    assert chloe.post(f"{API}requests/{made['id']}/withdraw/").status_code == 409
    assert alice.post(f"{API}requests/{made['id']}/approve/").status_code == 409
    assert "request_restore" not in _row(chloe, "Project:4")["disabled"]

    # Declined, with the reason shown to the requester.
    again = data(chloe.post(API + "actions/", {"action": "request_restore",
                                               "collections": ["Project:4"]}))["requests"][0]
    alice.post(f"{API}requests/{again['id']}/decline/", {"comment": "the disk is full"})
    fates = {r["id"]: r for r in data(chloe.get(API + "requests/", state="all",
                                                mine="1"))["items"]}
    assert fates[again["id"]]["fate"] == "declined"
    assert fates[again["id"]]["decision_comment"] == "the disk is full"
    assert fates[again["id"]]["may_withdraw"] is False

    # Approved: its fate follows the job, to done.
    third = data(chloe.post(API + "actions/", {"action": "request_restore",
                                               "collections": ["Project:4"]}))["requests"][0]
    alice.post(f"{API}requests/{third['id']}/approve/")
    fates = {r["id"]: r["fate"] for r in data(chloe.get(API + "requests/", state="all",
                                                        mine="1"))["items"]}
    assert fates[third["id"]] == "queued"
    Job.objects.filter(pk=Request.objects.get(pk=third["id"]).job_id).update(state=Job.DONE)
    fates = {r["id"]: r["fate"] for r in data(chloe.get(API + "requests/", state="all",
                                                        mine="1"))["items"]}
    assert fates == {made["id"]: "withdrawn", again["id"]: "declined", third["id"]: "done"}
    assert chloe.get(API + "requests/", mine="yes").status_code == 400


def test_purge_is_off_without_a_verified_copy_and_says_why(world):  # noqa: F811
    ids, api, tmp_path = world
    location = _location(tmp_path)
    alice = api("alice")
    row = _row(alice, "Project:4")
    assert "purge" in row["actions"]
    assert "no verified copy" in row["disabled"]["purge"]
    c = Collection.objects.get(kind="project", omero_id=4)
    Copy.objects.create(collection=c, location=location, state=Copy.VERIFIED, files=1, bytes=1,
                        created=timezone.now())
    assert "purge" not in _row(alice, "Project:4")["disabled"]


def test_pending_count_in_the_header_and_email_promise(world):  # noqa: F811
    ids, api, tmp_path = world
    chloe, alice, ingrid = api("chloe"), api("alice"), api("ingrid")
    _purge("Project:4")
    assert b"sm-pending-count" not in alice.get("/storagemanager/").content
    chloe.post(API + "actions/", {"action": "request_restore", "collections": ["Project:4"]})
    for manager in (alice, ingrid):
        page = manager.get("/storagemanager/collections/").content.decode()
        assert 'id="sm-pending-count"' in page and "1 pending request<" in page
    assert "sm-pending-count" not in chloe.get("/storagemanager/").content.decode()

    # No mail server: nothing promises an e-mail.
    with override_settings(EMAIL_HOST=None):
        page = chloe.get("/storagemanager/").content.decode()
        assert 'data-mail="false"' in page and "You also get an e-mail" not in page
        assert data(chloe.get(API + "requests/", mine="1"))["emails"] is False
        help_text = data(chloe.get(API + "collections/Project:4/"))["restore_help"]
        assert "e-mail" not in help_text and "My requests" in help_text
    with override_settings(EMAIL_HOST="127.0.0.1"):
        page = chloe.get("/storagemanager/").content.decode()
        assert 'data-mail="true"' in page and "You also get an e-mail" in page
        preferences.set_many({"notify": ["error"]})
        assert data(chloe.get(API + "requests/", mine="1"))["emails"] is False

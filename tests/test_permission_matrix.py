"""Every endpoint of the Storage tab and its API, called by every kind of user, through
the real URLs and middleware (CSRF enforced), with the answer each must get.

Roles, on the generated facility (tests/api_support.py):
  anonymous      not signed in
  owner          chloe, owner of the target Project:4 "Chloé's Färbungen" (Cell Biology,
                 read-annotate); she owns no group
  member         bob, another member of Cell Biology (he owns Imaging Core, not this group)
  private        chloe again, but aimed at eve's Project:1 in O'Brien Lab, a private group
                 she is a member of: she must not even see it
  group_owner    alice, owner of Cell Biology
  admin          ingrid, an OMERO administrator

A cell is the expected HTTP status. Anything the user may not see answers 404 (not
403), so that existence does not leak.
"""
from datetime import datetime, timezone

import pytest

from omero_storagemanager import preferences
from omero_storagemanager.models import Collection, Copy, Job, Location, Request
from tests.api_support import (Api, data, disk_location, point_app_at, standin_middleware, sync,
                               user_ids)

ROLES = ("anonymous", "owner", "member", "private", "group_owner", "admin")
WHO = {"owner": "chloe", "member": "bob", "private": "chloe", "group_owner": "alice",
       "admin": "ingrid"}
OWNED, PRIVATE = "Project:4", "Project:1"  # chloe's; eve's in the private group
DATASET = {OWNED: 6, PRIVATE: 1}


def _everyone(status):
    return {"anonymous": 403, **{role: status for role in ROLES[1:]}}


PAGE = {"anonymous": 302, **{role: 200 for role in ROLES[1:]}}
ADMIN_PAGE = {"anonymous": 302, "owner": 403, "member": 403, "private": 403,
              "group_owner": 403, "admin": 200}
# bob leads Imaging Core and alice Cell Biology: both have an approval queue.
MANAGER_PAGE = {"anonymous": 302, "owner": 403, "member": 200, "private": 403,
                "group_owner": 200, "admin": 200}
SEE = {"anonymous": 403, "owner": 200, "member": 200, "private": 404, "group_owner": 200,
       "admin": 200}
MANAGE = {"anonymous": 403, "owner": 403, "member": 403, "private": 404, "group_owner": 200,
          "admin": 200}
OWN = {"anonymous": 403, "owner": 202, "member": 403, "private": 404, "group_owner": 202,
       "admin": 202}


def ADMIN(status):
    return {"anonymous": 403, "owner": 403, "member": 403, "private": 403,
            "group_owner": 403, "admin": status}


def _with(table, **changes):
    return {**table, **changes}


# (name, method, path (with {target}, {dataset}, {job}, {request}, {location},
#  {empty_location}), body, prepare, expected)
ENDPOINTS = [
    ("page overview", "GET", "/storagemanager/", None, None, PAGE),
    ("page collections", "GET", "/storagemanager/collections/", None, None, PAGE),
    ("page statistics", "GET", "/storagemanager/statistics/", None, None, PAGE),
    ("page jobs", "GET", "/storagemanager/jobs/", None, None, PAGE),
    ("page admin settings", "GET", "/storagemanager/admin/", None, None, ADMIN_PAGE),
    ("page admin locations", "GET", "/storagemanager/admin/locations/", None, None, ADMIN_PAGE),
    ("page admin quotas", "GET", "/storagemanager/admin/quotas/", None, None, ADMIN_PAGE),
    ("page admin tasks", "GET", "/storagemanager/admin/tasks/", None, None, ADMIN_PAGE),
    ("page admin requests", "GET", "/storagemanager/admin/requests/", None, None, MANAGER_PAGE),
    ("api root", "GET", "/storagemanager/api/v1/", None, None, _everyone(200)),
    ("status", "GET", "/storagemanager/api/v1/status/", None, None, _everyone(200)),
    ("usage", "GET", "/storagemanager/api/v1/usage/", None, None, _everyone(200)),
    ("collections", "GET", "/storagemanager/api/v1/collections/", None, None, _everyone(200)),
    ("collection", "GET", "/storagemanager/api/v1/collections/{target}/", None, None, SEE),
    ("statistics", "GET", "/storagemanager/api/v1/statistics/", None, None, _everyone(200)),
    ("object dataset", "GET", "/storagemanager/api/v1/objects/dataset/{dataset}/", None, None, SEE),
    ("object project", "GET", "/storagemanager/api/v1/objects/project/{target_id}/", None, None,
     SEE),
    ("breakdown", "GET", "/storagemanager/api/v1/breakdown/?objects=project-{target_id}", None,
     None, SEE),
    ("scan", "POST", "/storagemanager/api/v1/actions/",
     {"action": "scan", "collections": ["{target}"]}, None, OWN),
    ("archive", "POST", "/storagemanager/api/v1/actions/",
     {"action": "archive", "collections": ["{target}"]}, None,
     _with(OWN, owner=403)),  # needs approval: the owner must request it
    ("request archive", "POST", "/storagemanager/api/v1/actions/",
     {"action": "request_archive", "collections": ["{target}"]}, "no_request", OWN),
    ("archive, approval off", "POST", "/storagemanager/api/v1/actions/",
     {"action": "archive", "collections": ["{target}"]}, "approval_off", OWN),
    ("purge", "POST", "/storagemanager/api/v1/actions/",
     {"action": "purge", "collections": ["{target}"]}, "copied",
     _with(MANAGE, group_owner=202, admin=202)),
    ("restore", "POST", "/storagemanager/api/v1/actions/",
     {"action": "restore", "collections": ["{target}"]}, "purged",
     _with(OWN, owner=403)),
    ("request restore", "POST", "/storagemanager/api/v1/actions/",
     {"action": "request_restore", "collections": ["{target}"]}, "purged no_request", OWN),
    ("jobs", "GET", "/storagemanager/api/v1/jobs/", None, None, _everyone(200)),
    ("job", "GET", "/storagemanager/api/v1/jobs/{job}/", None, None, SEE),
    ("job log", "GET", "/storagemanager/api/v1/jobs/{job}/log/", None, None, MANAGE),
    ("job cancel", "POST", "/storagemanager/api/v1/jobs/{job}/cancel/", None, None,
     _with(MANAGE, owner=200)),  # chloe asked for the job: she may cancel it
    ("job retry", "POST", "/storagemanager/api/v1/jobs/{job}/retry/", None, "job_failed", MANAGE),
    ("requests", "GET", "/storagemanager/api/v1/requests/", None, None, _everyone(200)),
    ("approve", "POST", "/storagemanager/api/v1/requests/{request}/approve/", None, None,
     _with(MANAGE, member=404)),  # bob cannot see chloe's request at all
    ("decline", "POST", "/storagemanager/api/v1/requests/{request}/decline/", None, None,
     _with(MANAGE, member=404)),
    ("admin preferences", "GET", "/storagemanager/api/v1/admin/preferences/", None, None,
     ADMIN(200)),
    ("admin preferences set", "POST", "/storagemanager/api/v1/admin/preferences/",
     {"values": {"purge_rename": True}}, None, ADMIN(200)),
    ("admin locations", "GET", "/storagemanager/api/v1/admin/locations/", None, None, ADMIN(200)),
    ("admin location add", "POST", "/storagemanager/api/v1/admin/locations/",
     {"name": "new disk", "type": "hdd", "mount": "{new_mount}", "max_bytes": "1 GB"}, None,
     ADMIN(201)),
    ("admin location edit", "POST", "/storagemanager/api/v1/admin/locations/{location}/",
     {"purge_watermark": 70}, None, ADMIN(200)),
    ("admin location current", "POST",
     "/storagemanager/api/v1/admin/locations/{empty_location}/current/", None, None, ADMIN(200)),
    ("admin location rescan", "POST",
     "/storagemanager/api/v1/admin/locations/{location}/rescan/", None, None, ADMIN(202)),
    ("admin location purge cache", "POST",
     "/storagemanager/api/v1/admin/locations/{location}/purge-cache/", None, None,
     ADMIN(409)),  # an HDD has no read cache
    ("admin location remove", "POST",
     "/storagemanager/api/v1/admin/locations/{empty_location}/remove/", None, None, ADMIN(200)),
    ("admin location remove in use", "POST",
     "/storagemanager/api/v1/admin/locations/{location}/remove/", None, None, ADMIN(409)),
    ("admin quotas", "GET", "/storagemanager/api/v1/admin/quotas/", None, None, ADMIN(200)),
    ("admin quota set", "POST", "/storagemanager/api/v1/admin/quotas/",
     {"scope": "user", "omero_id": None, "max_bytes": "500 GB"}, None, ADMIN(200)),
    ("admin schedules", "GET", "/storagemanager/api/v1/admin/schedules/", None, None, ADMIN(200)),
    ("admin schedule set", "POST", "/storagemanager/api/v1/admin/schedules/",
     {"kind": "sync", "times": "01:00"}, None, ADMIN(200)),
    ("admin run now", "POST", "/storagemanager/api/v1/admin/schedules/sync/run/", None, None,
     ADMIN(202)),
    ("admin test e-mail", "POST", "/storagemanager/api/v1/admin/test-email/", None, None,
     ADMIN(409)),  # no mail server in the tests: refused, saying so
]


@pytest.fixture
def world(facility, app_db, monkeypatch, tmp_path):
    """Collections synced; a current location holding a verified copy of each target; a
    queued job and a pending request on each target, by its owner."""
    point_app_at(facility, monkeypatch, tmp_path)
    sync(facility)
    ids = user_ids(facility)
    mount = tmp_path / "archive"
    location = disk_location(mount, max_bytes=10**10)
    empty = Location.objects.create(name="spare", type="hdd", mount=str(mount), max_bytes=10**9)
    (mount / str(empty.pk) / "read").mkdir(parents=True)
    (mount / str(empty.pk) / "write").mkdir(parents=True)
    (tmp_path / "new").mkdir()
    now = datetime.now(timezone.utc)
    made = {"location": location.pk, "empty_location": empty.pk,
            "new_mount": str(tmp_path / "new")}
    for key in (OWNED, PRIVATE):
        c = Collection.objects.get(kind="project", omero_id=int(key.split(":")[1]))
        Copy.objects.create(collection=c, location=location, bag_path=f"bag-{c.pk}",
                            state=Copy.VERIFIED, created=now, verified_at=now, files=1, bytes=10)
        job = Job.objects.create(kind="audit", requested_by_id=c.owner_id,
                                 requested_by_name="owner", log_dir=str(tmp_path / f"log{c.pk}"))
        job.collections.set([c])
        request = Request.objects.create(kind="archive", collection=c, requested_by_id=c.owner_id,
                                         requested_by_name="owner")
        made[key] = {"collection": c, "job": job.pk, "request": request.pk}
    with standin_middleware():
        yield ids, made


def _prepare(steps, target):
    for step in (steps or "").split():
        _prepare_one(step, target)


def _prepare_one(step, target):
    c = target["collection"]
    if step == "no_request":
        Request.objects.filter(collection=c).delete()
    elif step == "approval_off":
        preferences.set_many({"require_approval": False})
    elif step == "purged":
        Collection.objects.filter(pk=c.pk).update(state=Collection.PURGED)
    elif step == "job_failed":
        Job.objects.filter(pk=target["job"]).update(state=Job.FAILED)
    elif step == "copied":
        pass  # the world has a verified copy of each target


def _fill(text, key, target, made):
    return (text.replace("{target}", key).replace("{target_id}", key.split(":")[1])
            .replace("{dataset}", str(DATASET[key])).replace("{job}", str(target["job"]))
            .replace("{request}", str(target["request"]))
            .replace("{empty_location}", str(made["empty_location"]))
            .replace("{location}", str(made["location"])).replace("{new_mount}", made["new_mount"]))


def _body(body, fill):
    if body is None:
        return None
    return {k: ([fill(x) for x in v] if isinstance(v, list) else fill(v) if isinstance(v, str)
                else v) for k, v in body.items()}


CASES = [(e[0], role) for e in ENDPOINTS for role in ROLES]


@pytest.mark.parametrize("endpoint,role", CASES, ids=[f"{e}-{r}" for e, r in CASES])
def test_permission_matrix(world, endpoint, role):
    ids, made = world
    name, method, path, body, step, expected = next(e for e in ENDPOINTS if e[0] == endpoint)
    key = PRIVATE if role == "private" else OWNED
    target = made[key]
    _prepare(step, target)
    api = Api(None if role == "anonymous" else ids[WHO[role]])

    def fill(text):
        return _fill(text, key, target, made)

    url = fill(path)
    response = api.get(url) if method == "GET" else api.post(url, _body(body, fill))
    assert response.status_code == expected[role], (
        f"{method} {url} as {role}: {response.status_code}, expected {expected[role]}: "
        f"{response.content[:300]!r}")
    if "/api/" in url and response.status_code >= 400:
        assert "error" in data(response), response.content[:200]


@pytest.mark.parametrize("endpoint", [e[0] for e in ENDPOINTS if e[1] == "POST"])
def test_posts_without_csrf_token_are_refused(world, endpoint):
    """Even the admin's POSTs need the CSRF token (Django's middleware; OMERO.web answers
    in JSON), and nothing happens."""
    ids, made = world
    name, method, path, body, step, expected = next(e for e in ENDPOINTS if e[0] == endpoint)
    target = made[OWNED]
    jobs_before = Job.objects.count()
    def fill(text):
        return _fill(text, OWNED, target, made)

    response = Api(ids["ingrid"]).post(fill(path), _body(body, fill), csrf=False)
    assert response.status_code == 403
    assert "CSRF" in data(response)["message"]
    assert Job.objects.count() == jobs_before

"""The OpenAPI description (views/openapi.py) against the app: it is served; every route
and method under api/v1/ is in it and nothing else; every query parameter a view reads is
documented and every documented one is read; and, generated from it, every operation
called as every role gets a status the description lists, with a body that matches its
schema, and 403 for every role the operation does not allow (the permission matrix).
"""
import json
import re
from datetime import datetime, timezone

import jsonschema_rs
import pytest
from django.urls import URLResolver

from omero_storagemanager import urls
from omero_storagemanager.models import Collection, Copy, Job, Request
from omero_storagemanager.views import common
from omero_storagemanager.views.openapi import OPERATIONS, description
from tests.api_support import (RITA, Api, add_restricted_admin, data, disk_location, point_app_at,
                               standin_middleware, sync, user_ids)

BASE = "/storagemanager/api/v1"
ROLE_USERS = {"anonymous": None, "guest": 1, "member": "chloe", "group_owner": "alice",
              "restricted_admin": RITA, "admin": "ingrid"}
# Django's names for path parameters -> the description's.
_RENAMES = {"pk": "id", "oid": "id", "dtype": "type"}


def _routes():
    """{(path as the description writes it, method)} of the app's API URL patterns."""
    found = set()
    for pattern in urls.urlpatterns:
        assert not isinstance(pattern, URLResolver)
        text = str(pattern.pattern)
        if "api/v1/" not in text or pattern.name == "storagemanager_api_unknown":
            continue
        text = text.lstrip("^").rstrip("$")
        text = re.sub(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)",
                      lambda m: "{%s}" % _RENAMES.get(m[1], m[1]), text)
        text = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{%s}" % _RENAMES.get(m[1], m[1]), text)
        path = "/" + text[len("api/v1/"):]
        callback = pattern.callback
        methods = getattr(callback, "api_methods", None)
        if methods is None:  # openapi.json: GET only
            methods = ("GET",)
        found |= {(path, method.lower()) for method in methods}
    return found


def test_every_route_and_method_is_described_and_nothing_else():
    documented = {(path, method) for method, path, *_ in OPERATIONS}
    routes = _routes()
    assert routes - documented == set(), "routes missing from views/openapi.py"
    assert documented - routes == set(), "described operations with no route"
    assert len(routes) >= 30  # 29 URLs, two of them GET and POST


def test_the_description_is_a_valid_openapi_3_1_document():
    import schemathesis

    spec = description()
    assert spec["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(spec)
    operations = [op for op in schema.get_all_operations()]
    assert len(operations) == len(OPERATIONS)
    assert all(op.ok() for op in operations), [op.err() for op in operations if not op.ok()]
    ids = [op[2] for op in OPERATIONS]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


@pytest.fixture
def world(facility, app_db, monkeypatch, tmp_path):
    add_restricted_admin(facility)
    point_app_at(facility, monkeypatch, tmp_path)
    sync(facility)
    ids = user_ids(facility)
    location = disk_location(tmp_path / "archive", max_bytes=10**10)
    c = Collection.objects.get(kind="project", omero_id=4)  # chloe's, in Cell Biology
    now = datetime.now(timezone.utc)
    Copy.objects.create(collection=c, location=location, bag_path="bag", state=Copy.VERIFIED,
                        created=now, verified_at=now, files=1, bytes=10)
    job = Job.objects.create(kind="audit", state=Job.FAILED, requested_by_id=ids["chloe"],
                             requested_by_name="chloe", log_dir=str(tmp_path / "log"))
    job.collections.set([c])
    request = Request.objects.create(kind="restore", collection=c, requested_by_id=ids["chloe"],
                                     requested_by_name="chloe")
    values = {"key": "Project:4", "type": "dataset", "id": {"object": 6, "object_learn": 6,
                                                             "job": job.pk, "request": request.pk,
                                                             "location": location.pk},
              "action": "rescan", "kind": "sync"}
    with standin_middleware():
        yield ids, values


# A valid body for each POST (the matrix fails for an operation without one).
BODIES = {
    "actions": {"action": "scan", "collections": ["Project:4"]},
    "object_learn": {}, "job_cancel": {}, "job_retry": {},
    "request_approve": {"comment": "ok"}, "request_decline": {"comment": "no"},
    "preferences_set": {"values": {"purge_rename": True}},
    "location_add": {"name": "second", "type": "hdd", "mount": "{mount}", "max_bytes": "1 GB"},
    "location_edit": {"purge_watermark": 70}, "location_action": {},
    "quota_set": {"scope": "user", "omero_id": None, "max_bytes": "500 GB"},
    "schedule_set": {"kind": "sync", "times": "01:00"}, "run_now": {}, "test_email": {},
    "request_withdraw": {},
    "planner_queue": {"rules": ["size above 1 TiB"]},
}
QUERIES = {"breakdown": {"objects": "project-4"}}


def _url(path, op_id, values):
    def fill(match):
        value = values[match[1]]
        if isinstance(value, dict):
            value = value["request" if op_id.startswith("request_") else
                          "job" if op_id.startswith("job") else
                          "location" if op_id.startswith("location") else "object"]
        return str(value)

    return BASE + re.sub(r"\{(\w+)\}", fill, path)


def _validator(spec, schema):
    return jsonschema_rs.validator_for({**schema, "components": spec["components"]})


def _check_against_description(spec, method, path, response):
    operation = spec["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{method.upper()} {path}: status {status} is not in the description: "
        f"{response.content[:300]!r}")
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    body = json.loads(response.content)
    errors = [str(e) for e in _validator(spec, schema).iter_errors(body)]
    assert not errors, f"{method.upper()} {path} {status}: {errors[:3]}"


CASES = [(op[2], role) for op in OPERATIONS for role in ROLE_USERS]


@pytest.mark.parametrize("op_id,role", CASES, ids=[f"{o}-{r}" for o, r in CASES])
def test_permission_matrix_from_the_description(world, op_id, role, tmp_path):
    ids, values = world
    spec = description(BASE)
    method, path, _, _, roles, *_ = next(op for op in OPERATIONS if op[2] == op_id)
    who = ROLE_USERS[role]
    api = Api(ids.get(who, who) if isinstance(who, str) else who)
    url = _url(path, op_id, values)
    if method == "get":
        response = api.get(url, **QUERIES.get(op_id, {}))
    else:
        assert op_id in BODIES, f"add a sample body for {op_id} to BODIES"
        body = json.loads(json.dumps(BODIES[op_id]).replace(
            "{mount}", str(tmp_path / "archive")))
        response = api.post(url, body)
    allowed = role in roles
    if not allowed:
        assert response.status_code == 403, (
            f"{method.upper()} {url} as {role}: {response.status_code}, must be refused: "
            f"{response.content[:300]!r}")
    assert response.status_code < 500, response.content[:300]
    _check_against_description(spec, method, path, response)


def test_served_description_is_the_one_source(world):
    ids, _ = world
    for who in (None, ids["chloe"]):
        response = Api(who).get(BASE + "/openapi.json")
        assert response.status_code == 200
        assert data(response) == json.loads(json.dumps(description(BASE)))
    assert BASE + "/openapi.json" == data(Api(ids["chloe"]).get(BASE + "/"))["openapi"]


class _Recording(dict):
    pass


def test_every_query_parameter_read_is_documented_and_every_documented_one_read(world,
                                                                                monkeypatch):
    ids, values = world
    read = []
    real_run = common._run

    def recording_run(view, request, conn, args, kwargs, admin):
        original = request.GET
        seen = set()

        class Recorder(type(original)):
            def __getitem__(self, key):
                seen.add(key)
                return super().__getitem__(key)

            def get(self, key, default=None):
                seen.add(key)
                return super().get(key, default)

            def getlist(self, key, default=None):
                seen.add(key)
                return super().getlist(key, default)

        recorder = Recorder(mutable=True)
        recorder.update(original)
        request.GET = recorder
        try:
            return real_run(view, request, conn, args, kwargs, admin)
        finally:
            read.append(seen)

    monkeypatch.setattr(common, "_run", recording_run)
    samples = {"q": "x", "rule": "size above 1 GB", "kind": "project", "sort": "name",
               "page": "1", "per_page": "5", "objects": "project-4", "state": "all",
               "file": "job.log", "mine": "1", "window": "90"}
    admin = Api(ids["ingrid"])
    for method, path, op_id, _, _, parameters, *_ in OPERATIONS:
        if method != "get" or op_id == "openapi":
            continue
        documented = {p["name"] for p in parameters if p["in"] == "query"}
        read.clear()
        response = admin.get(_url(path, op_id, values),
                             **{name: samples[name] for name in documented})
        assert response.status_code == 200, (op_id, response.content[:300])
        assert len(read) == 1
        assert read[0] - documented == set(), f"{op_id} reads undocumented {read[0] - documented}"
        assert documented - read[0] == set(), f"{op_id} never reads {documented - read[0]}"

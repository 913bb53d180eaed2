"""Every class of bad input the fuzz of issue 21 found (finding 1), through the real URLs
and middleware: each gets a JSON 4xx with a message, never a 500, an HTML page or a
redirect, and changes nothing. Each case failed before its fix.
"""
import json

import pytest

from omero_storagemanager import preferences
from omero_storagemanager.models import Job, Preference, Quota
from tests.api_support import CSRF, Api, data, point_app_at, standin_middleware, sync, user_ids

API = "/storagemanager/api/v1/"
ARABIC_FOUR = "\u0664"  # an Arabic-Indic digit: int() reads it as 4, OMERO ids never are


@pytest.fixture
def world(facility, app_db, monkeypatch, tmp_path):
    point_app_at(facility, monkeypatch, tmp_path)
    sync(facility)
    ids = user_ids(facility)
    with standin_middleware():
        yield ids, {name: Api(uid) for name, uid in ids.items()} | {None: Api(None)}


def _json_error(response, *statuses):
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = json.loads(response.content)
    assert isinstance(body["error"], str) and body["error"], body
    assert "Traceback" not in body["error"]
    return body["error"]


def _raw_post(api, path, text):
    return api.client.post(path, text, content_type="application/json", HTTP_X_CSRFTOKEN=CSRF)


FAR_DATES = ["created before 9999-12-31", "created after 9999-12-31", "created on 9999-12-31",
             "last access after 99999 years ago", "newest file before 99999 years ago",
             "last scan on 0001-01-01", "created after 9000 years ago"]


@pytest.mark.parametrize("rule", FAR_DATES)
def test_far_dates_in_rules_are_refused_for_a_plain_member(world, rule):
    ids, users = world
    message = _json_error(users["bob"].get(API + "collections/", rule=rule), 400)
    assert "out of range" in message


def test_dates_at_the_edges_of_the_range_still_work(world):
    ids, users = world
    for rule in ("created before 9999-12-30", "created after 0001-01-02",
                 "last access after 2000 years ago"):
        assert users["bob"].get(API + "collections/", rule=rule).status_code == 200, rule


DEEP = ['{"a":' * 5000 + "1" + "}" * 5000, "[" * 100_000 + "]" * 100_000,
        '{"values":' + "[" * 3000 + "]" * 3000 + "}", '{"a":' * 40 + "1" + "}" * 40]


@pytest.mark.parametrize("body", DEEP, ids=["objects", "lists", "values", "forty"])
def test_deeply_nested_bodies_are_refused_on_every_post(world, body):
    ids, users = world
    for path in ("actions/", "admin/preferences/", "admin/quotas/", "admin/schedules/",
                 "admin/locations/"):
        response = _raw_post(users["ingrid"], API + path, body)
        assert "nested too deeply" in _json_error(response, 400), path


NUMBERS = ["1e309", "-1e309", "NaN", "Infinity", "-Infinity", str(2**63), str(-2**70),
           "9" * 5000]


@pytest.mark.parametrize("number", NUMBERS, ids=[n[:12] for n in NUMBERS])
def test_numbers_beyond_range_are_refused_in_sizes_ids_and_preferences(world, number):
    ids, users = world
    admin = users["ingrid"]
    bodies = [
        ("admin/quotas/", '{"scope": "user", "omero_id": %s, "max_bytes": 5}' % number),
        ("admin/quotas/", '{"scope": "group", "omero_id": null, "max_bytes": %s}' % number),
        ("admin/preferences/", '{"values": {"copies_required": %s}}' % number),
        ("admin/preferences/", '{"values": {"archive_user_id": %s}}' % number),
        ("admin/preferences/", '{"values": {"auto_archive_users": [%s]}}' % number),
        ("admin/locations/", '{"name": "n", "type": "hdd", "mount": "/tmp", "max_bytes": %s}'
         % number),
        ("actions/", '{"action": "scan", "collections": ["Project:2"], "mode": %s}' % number),
    ]
    for path, text in bodies:
        _json_error(_raw_post(admin, API + path, text), 400)
    assert not Quota.objects.exists() and not Preference.objects.exists()
    assert not Job.objects.exists()


def test_sizes_and_counts_beyond_what_the_database_holds_are_refused(world):
    ids, users = world
    admin = users["ingrid"]
    for body in ({"scope": "group", "omero_id": None, "max_bytes": 2**63 - 1},
                 {"scope": "group", "omero_id": None, "max_bytes": "9" * 40 + " PB"}):
        _json_error(admin.post(API + "admin/quotas/", body), 400)
    for value in (2**40, 1.5, True, "٤", "1e3", 0):
        message = _json_error(admin.post(API + "admin/preferences/",
                                         {"values": {"copies_required": value}}), 400)
        assert "copies_required" in message
    assert not Quota.objects.exists() and not Preference.objects.exists()
    for path in ("jobs/99999999999999999999/", "requests/99999999999999999999/approve/",
                 "admin/locations/99999999999999999999/"):
        _json_error(admin.get(API + path) if path.startswith("jobs") else
                    admin.post(API + path, {}), 404)


def test_archive_user_and_group_can_be_cleared_and_must_exist_in_omero(world):
    ids, users = world
    admin = users["ingrid"]
    url = API + "admin/preferences/"
    for name, good in (("archive_user_id", ids["eve"]), ("archive_group_id", 3)):
        assert admin.post(url, {"values": {name: good}}).status_code == 200
        assert preferences.get(name) == good
        message = _json_error(admin.post(url, {"values": {name: 987654}}), 400)
        assert "987654" in message and name in message
        assert preferences.get(name) == good  # the refused value is not stored
        for empty in (None, ""):
            cleared = admin.post(url, {"values": {name: empty}})
            assert cleared.status_code == 200, cleared.content
            assert data(cleared)["preferences"][name]["value"] is None
            assert preferences.get(name) is None
    _json_error(admin.post(API + "admin/quotas/", {"scope": "user", "omero_id": 987654,
                                                   "max_bytes": 5}), 400)
    assert not Quota.objects.exists()


@pytest.mark.parametrize("times", [[1, 2], [None], [["01:00"]], [{"a": 1}], 7, True,
                                   {"t": "01:00"}])
def test_schedule_times_that_are_not_strings_are_refused(world, times):
    ids, users = world
    message = _json_error(users["ingrid"].post(API + "admin/schedules/",
                                               {"kind": "sync", "times": times}), 400)
    assert "times" in message
    _json_error(users["ingrid"].post(API + "admin/schedules/",
                                     {"kind": ["sync"], "times": "01:00"}), 400)


def test_digits_of_other_scripts_are_not_ids(world):
    ids, users = world
    chloe = users["chloe"]
    _json_error(chloe.get(f"{API}collections/Project:{ARABIC_FOUR}/"), 404)
    _json_error(chloe.post(API + "actions/", {"action": "scan",
                                              "collections": [f"Project:{ARABIC_FOUR}"]}), 400)
    listed = data(chloe.get(API + "collections/", q=f"Project:{ARABIC_FOUR}"))
    assert listed["total"] == 0
    assert data(chloe.get(API + "collections/", q=ARABIC_FOUR))["total"] == 0
    for rule in (f"id is {ARABIC_FOUR}", f"size above {ARABIC_FOUR} GB",
                 f"created after {ARABIC_FOUR} days ago", "files above \u00b2"):
        _json_error(chloe.get(API + "collections/", rule=rule), 400)
    for params in ({"page": ARABIC_FOUR}, {"per_page": "\u00b2"}):
        _json_error(chloe.get(API + "jobs/", **params), 400)
        _json_error(chloe.get(API + "collections/", **params), 400)
    _json_error(chloe.get(API + "breakdown/", objects=f"project-{ARABIC_FOUR}"), 400)


UNKNOWN = ["nope/", "jobs/abc/", "jobs/-1/", "jobs/1.5/", "collections/Dataset:1/",
           "collections/Project:abc/", "objects/dataset/x/",
           "requests/1/maybe/", "jobs", "collections", "status",
           "collections/Project:4", "x" * 500]


@pytest.mark.parametrize("path", UNKNOWN)
@pytest.mark.parametrize("who", ["alice", None])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_urls_under_the_api_answer_json_404_not_html_nor_redirect(world, path, who,
                                                                          method):
    ids, users = world
    api = users[who]
    response = api.get(API + path) if method == "GET" else api.post(API + path, {})
    if who is None:  # the anonymous caller is refused, as everywhere under the API
        assert "not signed in" in _json_error(response, 403)
        return
    message = _json_error(response, 404)
    if not path.endswith("/") and path in ("jobs", "collections", "status"):
        assert "trailing slash" in message


@pytest.mark.parametrize("path", ["admin/", "admin/quotas", "admin/locations/1/explode/",
                                  "admin/locations/99999999999999999999/"])
def test_unknown_urls_under_admin_refuse_non_admins_first(world, path):
    ids, users = world
    assert "administrators" in _json_error(users["alice"].get(API + path), 403)
    _json_error(users["ingrid"].get(API + path), 404)


def test_wrong_method_is_json_405_and_head_works_where_get_does(world):
    ids, users = world
    alice = users["alice"]
    response = alice.post(API + "collections/", {})
    assert "not allowed" in _json_error(response, 405)
    assert "HEAD" in response["Allow"]
    for path in ("", "status/", "collections/", "jobs/", "requests/", "statistics/",
                 "collections/Project:4/"):
        head = alice.client.head(API + path)
        assert head.status_code == 200, (path, head.status_code, head.content[:200])
        assert head.content == b""
    assert users["ingrid"].client.head(API + "admin/quotas/").status_code == 200
    assert alice.client.head(API + "admin/quotas/").status_code == 403
    assert alice.client.head(API + "actions/").status_code == 405  # POST only
    for method in ("put", "delete", "patch", "options", "trace"):  # for anyone, first
        for caller in (users[None], alice):
            refused = getattr(caller.client, method)(API + "collections/")
            assert refused.status_code == 405, (method, refused.status_code)
    assert users["alice"].post(API + "admin/schedules/", {"kind": "sync", "times": [""]}
                               ).status_code == 403
    assert users["ingrid"].post(API + "admin/schedules/", {"kind": "sync", "times": [""]}
                                ).status_code == 400


def test_overlong_query_strings_get_a_json_414(world):
    ids, users = world
    response = users["alice"].get(API + "collections/", q="x" * 5000)
    assert "query string" in _json_error(response, 414)
    response = users["alice"].get(API + "jobs/", **{f"p{i}": "v" * 50 for i in range(100)})
    _json_error(response, 414)

"""Capacity planning (issue 22): usage recorded daily (idempotent, a few rows a day),
the projection of when the primary storage fills (a least-squares line whose basis is
named), and the what-if planner: what a rule matches and frees, the copies there are and
needed, the date the projection moves to, and one step that queues archive-then-purge."""
from datetime import date, timedelta

import pytest
from django.utils import timezone
from hypothesis import given, settings as hsettings, strategies as st

from omero_storagemanager.engine import usage as capacity
from omero_storagemanager.models import Collection, Copy, Job, UsageRecord
from omero_storagemanager.tasks.plans import purge_after_archive
from tests.api_support import data
from tests.test_api import API, _location, world  # noqa: F401 (the fixture)

GIB = 2**30


@given(st.floats(-1e12, 1e12), st.floats(-1e6, 1e6),
       st.lists(st.integers(0, 3650), min_size=2, max_size=40, unique=True))
@hsettings(max_examples=200, deadline=None)
def test_fit_line_recovers_any_exact_line(intercept, slope, days):
    fitted_slope, fitted_intercept = capacity.fit_line([(d, intercept + slope * d) for d in days])
    assert fitted_slope == pytest.approx(slope, rel=1e-6, abs=1e-3)
    assert fitted_intercept == pytest.approx(intercept, rel=1e-6, abs=1e-1)


def test_fit_line_needs_two_distinct_days():
    assert capacity.fit_line([]) is None
    assert capacity.fit_line([(3, 10)]) is None
    assert capacity.fit_line([(3, 10), (3, 11)]) is None


def _figures():
    """Scan figures on every collection (the world is synced, not scanned): distinct
    sizes, some shared bytes."""
    for c in Collection.objects.all():
        Collection.objects.filter(pk=c.pk).update(files=10 + c.pk, bytes=c.pk * GIB,
                                                  shared_bytes=(c.pk % 3) * 1024)


def _primary(days_ago, used, size=1000 * GIB, today=None):
    today = today or date.today()
    UsageRecord.objects.update_or_create(
        day=today - timedelta(days=days_ago), scope=UsageRecord.PRIMARY, subject=0,
        defaults={"bytes": used, "limit_bytes": size, "name": "primary storage"})


def test_projection_names_its_basis_and_moves_with_freed_bytes(app_db):
    today = date(2026, 6, 1)
    assert capacity.projection(90, today)["enough"] is False
    for days_ago in range(0, 60, 10):  # 10 GiB a day, 400 GiB used today
        _primary(days_ago, (400 - 10 * days_ago) * GIB, today=today)
    _primary(200, 1 * GIB, today=today)  # outside the window: not in the fit
    p = capacity.projection(90, today)
    assert p["enough"] and p["points"] == 6 and p["window_days"] == 90
    assert p["bytes_per_day"] == pytest.approx(10 * GIB)
    assert p["full_on"] == today + timedelta(days=60)  # 600 GiB left at 10 GiB a day
    assert "linear fit of 6 days" in p["note"]
    after = capacity.projection(90, today, freed_bytes=100 * GIB)
    assert after["full_on"] == today + timedelta(days=70)
    assert after["used_bytes"] == 300 * GIB


def test_record_usage_is_idempotent_and_small(world):  # noqa: F811
    ids, api, tmp_path = world
    _location(tmp_path)
    _figures()
    written = capacity.record_usage(date(2026, 6, 1))
    again = capacity.record_usage(date(2026, 6, 1), people=True)
    assert written == again == UsageRecord.objects.count() < 40
    hourly = capacity.record_usage(date(2026, 6, 1))  # the primary and locations only
    assert hourly == UsageRecord.objects.filter(
        day=date(2026, 6, 1), scope__in=("primary", "location")).count() < written
    # The statistics page's figures (issue 22: one set of numbers): each file once per
    # group or user, purged collections left out.
    groups = {r.subject: r.bytes for r in UsageRecord.objects.filter(scope="group")}
    users = {r.subject: r.bytes for r in UsageRecord.objects.filter(scope="user")}
    shown = data(api("ingrid").get(API + "statistics/"))
    assert groups == {g["id"]: g["online_bytes"] for g in shown["groups"] if g["collections"]}
    assert users == {u["id"]: u["online_bytes"] for u in shown["users"] if u["collections"]}
    assert sum(groups.values()) > 0
    purged = Collection.objects.filter(group_id__in=[g for g, b in groups.items() if b]).first()
    Collection.objects.filter(pk=purged.pk).update(state=Collection.PURGED)
    capacity.record_usage(date(2026, 6, 1))  # the day's people rows stand ...
    row = UsageRecord.objects.get(scope="group", subject=purged.group_id, day=date(2026, 6, 1))
    assert row.bytes == groups[purged.group_id]
    capacity.record_usage(date(2026, 6, 1), people=True)  # ... until asked again
    row = UsageRecord.objects.get(scope="group", subject=purged.group_id, day=date(2026, 6, 1))
    after = {g["id"]: g["online_bytes"] for g in data(api("ingrid").get(API + "statistics/"))["groups"]}
    assert row.bytes == after[purged.group_id] < groups[purged.group_id]  # purged counts zero
    assert UsageRecord.objects.filter(scope="primary").count() == 1


def test_capacity_api_shows_each_user_what_they_may_see(world):  # noqa: F811
    ids, api, tmp_path = world
    capacity.record_usage()
    admin = data(api("ingrid").get(API + "capacity/", window="30"))
    assert admin["primary"] and admin["projection"]["window_days"] == 30
    chloe = data(api("chloe").get(API + "capacity/"))
    assert "primary" not in chloe and "projection" not in chloe
    assert {u["subject"] for u in chloe["users"]} == {ids["chloe"]}
    assert api("chloe").get(API + "capacity/", window="7").status_code == 400


def test_planner_previews_and_queues_archive_then_purge(world):  # noqa: F811
    ids, api, tmp_path = world
    location = _location(tmp_path)
    _figures()
    ingrid = api("ingrid")
    big = list(Collection.objects.filter(gone=False, files__gt=0).order_by("-bytes")[:2])
    Collection.objects.filter(pk__in=[c.pk for c in big]).update(last_access=None)
    Copy.objects.create(collection=big[0], location=location, state=Copy.VERIFIED,
                        files=1, bytes=1, created=timezone.now())
    rule = f"size above {big[1].bytes - 1}"
    preview = data(ingrid.get(API + "admin/planner/", rule=rule))
    keys = {i["key"] for i in preview["items"]}
    expected = {c.key for c in Collection.objects.filter(gone=False, files__gt=0,
                                                         bytes__gt=big[1].bytes - 1)
                .exclude(state="purged")}
    assert keys == expected and {c.key for c in big} <= keys
    totals = preview["totals"]
    assert totals["bytes"] == sum(c.bytes for c in Collection.objects.filter(
        kind__in=["project", "screen"]) if c.key in keys)
    assert totals["copies_existing"] == 1 and totals["copies_needed"] == len(keys) - 1
    assert totals["freed_at_least_bytes"] <= totals["freed_up_to_bytes"]
    assert api("alice").get(API + "admin/planner/", rule=rule).status_code == 403
    assert ingrid.get(API + "admin/planner/", rule="colour is red").status_code == 400
    assert ingrid.get(API + "admin/planner/").status_code == 400

    queued = ingrid.post(API + "admin/planner/queue/", {"rules": [rule]})
    assert queued.status_code == 202, queued.content
    answer = data(queued)
    assert answer["purge_now"] == [big[0].key]
    archive = Job.objects.get(kind="archive", pk__in=[j["id"] for j in answer["jobs"]])
    assert archive.params["then_purge"] is True
    assert set(answer["archive_then_purge"]) == keys - {big[0].key}
    assert ingrid.post(API + "admin/planner/queue/", {"rules": [rule]}).status_code == 409

    # The archive's end queues the purge of what now has its copies, once.
    assert purge_after_archive(archive) is None  # no copy yet: nothing to purge
    for c in archive.collections.all():
        Copy.objects.create(collection=c, location=location, state=Copy.VERIFIED,
                            files=1, bytes=1, created=timezone.now())
    Job.objects.filter(kind="purge").update(state=Job.DONE)
    follow = purge_after_archive(archive)
    assert {c.key for c in follow.collections.all()} == keys - {big[0].key}
    assert purge_after_archive(archive) is None  # already queued

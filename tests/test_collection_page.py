"""The collection page (issue 22): /storagemanager/collection/Project:N/ for whoever may
see the collection (404 otherwise), its files a page at a time (the generator's truth
for that collection, no file twice, none left out), and the history of its states."""
from django.utils import timezone

from omero_storagemanager.models import Collection, Job, ScanResult
from tests.api_support import data
from tests.test_api import API, world  # noqa: F401 (the fixture)


def test_page_is_for_those_who_may_see_the_collection(world):  # noqa: F811
    ids, api, _ = world
    page = api("eve").get("/storagemanager/collection/Project:1/")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-key="Project:1"' in text and "collection.js" in text
    assert api("chloe").get("/storagemanager/collection/Project:1/").status_code == 404
    assert api("chloe").get(API + "collections/Project:1/files/").status_code == 404
    assert api("chloe").get(API + "collections/Project:1/history/").status_code == 404
    assert api(None).get(API + "collections/Project:1/history/").status_code == 403


def test_files_are_paged_and_match_the_truth(world, facility):  # noqa: F811
    ids, api, _ = world
    truth = facility.truth.collection("project", 2)
    expected = sorted(f["path"] for f in truth["files"])
    seen, number = [], 1
    while True:
        answer = data(api("alice").get(API + "collections/Project:2/files/",
                                       page=number, per_page=3))
        assert answer["total"] == len(expected)
        seen += [item["path"] for item in answer["items"]]
        if number >= answer["pages"]:
            break
        number += 1
    root = facility.truth.data_dir.rstrip("/") + "/"
    assert seen == [p.removeprefix(root) for p in expected]  # relative for a non-admin
    admin = data(api("ingrid").get(API + "collections/Project:2/files/", per_page=500))
    assert [i["path"] for i in admin["items"]] == expected
    for bad in ({"page": "0"}, {"per_page": "501"}, {"page": "x"}):
        assert api("alice").get(API + "collections/Project:2/files/", **bad).status_code == 400


def test_history_tells_what_happened_in_order(world):  # noqa: F811
    ids, api, _ = world
    c = Collection.objects.get(kind="project", omero_id=2)
    now = timezone.now()
    ScanResult.objects.create(collection=c, mode="stat", started=now, finished=now,
                              figures={"files": 12, "bytes": 1024})
    job = Job.objects.create(kind="archive", state=Job.DONE, requested_by_name="alice",
                             finished=now + timezone.timedelta(minutes=5))
    job.collections.add(c)
    answer = data(api("alice").get(API + "collections/Project:2/history/"))
    assert [j["id"] for j in answer["jobs"]] == [job.pk]
    whats = [e["what"] for e in answer["events"]]
    assert whats[0] == f"archive job {job.pk} done"
    assert answer["events"][0]["state"] == "archived"
    assert f"archive job {job.pk} queued by alice" in whats
    assert "stat scan: 12 files, 1024 bytes" in whats
    times = [e["at"] for e in answer["events"]]
    assert times == sorted(times, reverse=True)


def test_the_age_of_last_access_is_the_last_scan_that_read_the_disk(world, facility):  # noqa: F811
    """Issue 20 ("fresh last access"): last_access is known only from a stat or verify
    scan; the detail says when that was, and a later catalog scan (OMERO's database
    only) does not make it look fresher."""
    from datetime import datetime, timedelta

    import psycopg2

    from omero_storagemanager.catalog.paths import RepositoryPaths
    from omero_storagemanager.engine.scan import scan

    ids, api, _ = world
    detail = API + "collections/Project:2/"
    assert data(api("alice").get(detail))["last_access_measured"] is None
    omero = psycopg2.connect(facility.dsn)
    try:
        paths = RepositoryPaths(facility.truth.data_dir, facility.truth.managed_dir)
        scan(omero, paths, "stat", keys=[("project", 2)])
        stat = ScanResult.objects.filter(collection__omero_id=2, collection__kind="project",
                                         mode="stat").get()
        answer = data(api("alice").get(detail))
        measured = datetime.fromisoformat(answer["last_access_measured"].replace("Z", "+00:00"))
        assert abs(measured - stat.finished) < timedelta(milliseconds=1)  # JSON keeps ms
        assert answer["last_access"] is not None
        scan(omero, paths, "catalog", keys=[("project", 2)])
        later = data(api("alice").get(detail))
        assert later["last_access_measured"] == answer["last_access_measured"]
        assert later["last_scan"] != answer["last_scan"]  # the figures themselves are newer
    finally:
        omero.close()

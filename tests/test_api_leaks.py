"""What the API must not tell, and what no role gets around (issue 21, findings 2-4),
through the real URLs and middleware: orphan objects' names, the keys of invisible
collections in a job, members' usage in other groups, other users' requests on a
collection's detail; GETs that change nothing; OMERO's restricted admins decided from
their privileges; the guest user refused. Each failed before its fix.
"""
import json
import stat
from datetime import datetime, timezone

import pytest

from omero_storagemanager.gateway import ALL_PRIVILEGES
from omero_storagemanager.models import Collection, Copy, Job, Location, Request
from testbed.standin import StandInGateway
from tests.api_support import (RITA, RITA_LACKS, Api, add_restricted_admin, data, omero_sql,
                               point_app_at, standin_middleware, sync, user_ids)

API = "/storagemanager/api/v1/"


@pytest.fixture
def world(facility, app_db, monkeypatch, tmp_path):
    add_restricted_admin(facility)
    point_app_at(facility, monkeypatch, tmp_path)
    sync(facility)
    ids = user_ids(facility) | {"rita": RITA, "guest": 1}
    with standin_middleware():
        yield ids, {name: Api(uid) for name, uid in ids.items()}, tmp_path


def _collection(key):
    kind, oid = key.split(":")
    return Collection.objects.get(kind=kind.lower(), omero_id=int(oid))


# -- finding 3: leaks ---------------------------------------------------------------------

def test_objects_in_no_collection_are_named_only_to_who_may_see_them(world, facility):
    ids, users, _ = world
    # eve's pilot Dataset, in her private group, taken out of its Project for the test.
    [(dataset, name, owner)] = omero_sql(facility, "SELECT id, name, owner_id FROM dataset"
                                                " WHERE name = 'Pilot 2013'")
    links = omero_sql(facility, "DELETE FROM projectdatasetlink WHERE child = %s RETURNING *",
                   [dataset])
    try:
        assert owner == ids["eve"]
        for outsider in ("bob", "chloe", "farid"):  # chloe is in the private group too
            refused = users[outsider].get(f"{API}objects/dataset/{dataset}/")
            assert refused.status_code == 404, (outsider, refused.content)
            assert name not in refused.content.decode()
        for insider in ("eve", "ingrid", "rita"):
            mine = data(users[insider].get(f"{API}objects/dataset/{dataset}/"))
            assert mine["object"]["name"] == name and mine["collections"] == []
    finally:
        columns = ", ".join(f'"{c}"' for c in _columns(facility, "projectdatasetlink"))
        for row in links:
            omero_sql(facility, f"INSERT INTO projectdatasetlink ({columns}) VALUES "
                             f"({', '.join(['%s'] * len(row))})", list(row))


def _columns(facility, table):
    return [c for (c,) in omero_sql(facility, "SELECT column_name FROM information_schema.columns"
                                           " WHERE table_name = %s ORDER BY ordinal_position",
                                 [table])]


def test_a_job_names_only_the_collections_the_user_may_see(world):
    ids, users, _ = world
    job = Job.objects.create(kind="scan", requested_by_id=ids["chloe"], requested_by_name="chloe")
    job.collections.set([_collection("Project:1"), _collection("Project:4")])  # eve's, chloe's
    bob = users["bob"]  # sees chloe's Project:4 (read-annotate group), not eve's private one
    assert data(bob.get(f"{API}jobs/{job.pk}/"))["collections"] == ["Project:4"]
    listed = next(j for j in data(bob.get(API + "jobs/"))["items"] if j["id"] == job.pk)
    assert listed["collections"] == ["Project:4"]
    assert "Project:1" not in json.dumps(data(bob.get(API + "jobs/")))
    assert sorted(data(users["ingrid"].get(f"{API}jobs/{job.pk}/"))["collections"]) == [
        "Project:1", "Project:4"]
    # Even who asked sees only what Access lets her see (eve's Project:1 is private).
    assert data(users["chloe"].get(f"{API}jobs/{job.pk}/"))["collections"] == ["Project:4"]


def test_a_group_owner_sees_members_usage_in_their_groups_only(world):
    ids, users, _ = world
    alice, chloe = users["alice"], users["chloe"]
    # chloe also owns a collection in O'Brien Lab, which alice does not own.
    outside = Collection.objects.create(kind="project", omero_id=77_001, name="chloe elsewhere",
                                        owner_id=ids["chloe"], owner_name="chloe",
                                        group_id=_collection("Project:1").group_id,
                                        group_name="O'Brien Lab", bytes=5 * 1024**3)
    location = Location.objects.create(name="d", type="hdd", mount="/tmp", max_bytes=10**12)
    Copy.objects.create(collection=outside, location=location, bag_path="b", state=Copy.VERIFIED,
                        bytes=5 * 1024**3, created=datetime.now(timezone.utc))
    own = data(chloe.get(API + "usage/"))["user"]
    seen = next(u for u in data(alice.get(API + "statistics/"))["users"] if u["id"] == ids["chloe"])
    in_cell_biology = Collection.objects.filter(owner_id=ids["chloe"], gone=False,
                                                group_id=_collection("Project:4").group_id)
    assert seen["collections"] == in_cell_biology.count() < own["collections"]
    assert seen["archived_bytes"] == 0 and own["archived_bytes"] == 5 * 1024**3
    admin_view = next(u for u in data(users["ingrid"].get(API + "statistics/"))["users"]
                      if u["id"] == ids["chloe"])
    assert admin_view["collections"] == own["collections"]


def test_a_collections_detail_shows_only_the_requests_the_user_may_see(world):
    ids, users, _ = world
    c = _collection("Project:4")  # chloe's, in Cell Biology (alice owns it, bob is a member)
    Request.objects.create(kind="archive", collection=c, requested_by_id=ids["chloe"],
                           requested_by_name="chloe", comment="private note from chloe")
    for who, expected in (("bob", 0), ("chloe", 1), ("alice", 1), ("ingrid", 1)):
        detail = users[who].get(f"{API}collections/Project:4/")
        assert detail.status_code == 200
        assert len(data(detail)["requests"]) == expected, who
        assert ("private note" in detail.content.decode()) == bool(expected), who
        listed = data(users[who].get(API + "requests/", state="all"))["items"]
        assert len([r for r in listed if r["collection"]["key"] == "Project:4"]) == expected


# -- finding 4: a GET changes nothing -------------------------------------------------------

def test_gets_of_the_plugins_change_nothing_and_a_post_learns(world):
    ids, users, _ = world
    Collection.objects.filter(kind="project", omero_id=6).delete()
    before = sorted(Collection.objects.values_list("pk", "kind", "omero_id", "state"))
    admin = users["ingrid"]
    for path in ("objects/project/6/", "objects/dataset/8/", "breakdown/?objects=project-6"):
        assert admin.get(API + path).status_code in (200, 404)
    assert sorted(Collection.objects.values_list("pk", "kind", "omero_id", "state")) == before
    learned = admin.post(API + "objects/project/6/")
    assert learned.status_code == 200
    assert [c["key"] for c in data(learned)["collections"]] == ["Project:6"]


# -- finding 2: OMERO's roles as they are ----------------------------------------------------

def test_restricted_admin_is_decided_from_its_privileges(world, tmp_path):
    ids, users, _ = world
    gateway = StandInGateway(_dsn(), RITA)
    assert gateway.is_admin() is True
    assert set(gateway.admin_privileges()) == ALL_PRIVILEGES - set(RITA_LACKS)
    assert set(StandInGateway(_dsn(), ids["ingrid"]).admin_privileges()) == ALL_PRIVILEGES
    assert StandInGateway(_dsn(), ids["bob"]).admin_privileges() == []
    mount = tmp_path / "disk"
    (mount / "1" / "read").mkdir(parents=True)
    location = Location.objects.create(name="disk", type="hdd", mount=str(mount),
                                       max_bytes=10**12, current=True)
    for sub in ("read", "write"):
        (mount / str(location.pk) / sub).mkdir(parents=True, exist_ok=True)
    rita = users["rita"]
    listed = {i["key"]: i for i in data(rita.get(API + "collections/", per_page=500))["items"]}
    assert "Project:1" in listed  # a restricted admin reads all data, as in OMERO
    assert listed["Project:4"]["actions"] == ["scan", "archive"]  # no purge, no restore
    archived = rita.post(API + "actions/", {"action": "archive", "collections": ["Project:4"]})
    assert archived.status_code == 202, archived.content
    Copy.objects.create(collection=_collection("Project:2"), location=location, bag_path="b",
                        state=Copy.VERIFIED, bytes=1, created=datetime.now(timezone.utc))
    refused = rita.post(API + "actions/", {"action": "purge", "collections": ["Project:2"]})
    assert refused.status_code == 403
    for path in ("admin/preferences/", "admin/locations/", "admin/quotas/"):
        assert rita.get(API + path).status_code == 403, path  # the app's settings: full admins
    assert rita.get("/storagemanager/admin/").status_code == 403
    status = data(rita.get(API + "status/"))
    assert status["user"]["admin"] is False and "repository" not in status


def _dsn():
    from omero_storagemanager import settings

    return settings.omero_db_params()


def test_the_guest_user_is_refused_everything(world):
    ids, users, _ = world
    guest = users["guest"]
    for path in ("", "status/", "collections/", "usage/", "jobs/", "requests/", "statistics/",
                 "collections/Project:4/", "objects/dataset/1/"):
        response = guest.get(API + path)
        assert response.status_code == 403, (path, response.status_code)
        assert "guest" in data(response)["error"]
    assert guest.post(API + "actions/", {"action": "scan", "collections": ["Project:4"]}
                      ).status_code == 403
    assert guest.get("/storagemanager/").status_code == 403
    assert not Job.objects.exists()


# -- finding 4: secrets and private files ---------------------------------------------------

def test_a_malformed_omero_db_setting_never_shows_its_password(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from testbed.omerodir import write_config

    repo = Path(__file__).resolve().parents[1]
    key = "omero.web.storagemanager.omero_db"
    for bad in ('{"host": "db", "password": "hunter2-secret", ', '["hunter2-secret"]',
                '{"password": ["hunter2-secret"]}'):
        omerodir = tmp_path / str(abs(hash(bad)))
        write_config(omerodir, {"omero.web.apps": ["omero_storagemanager"], key: bad})
        env = dict(os.environ, OMERODIR=str(omerodir), DJANGO_SETTINGS_MODULE="omeroweb.settings",
                   PYTHONPATH=str(repo))
        proc = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and key in proc.stderr, proc.stderr[-500:]
        assert "hunter2" not in proc.stderr + proc.stdout, proc.stderr[-500:]


def test_job_logs_and_backup_folders_are_for_the_service_user_only(world, tmp_path):
    import os

    from omero_storagemanager.private_files import private_dir, private_file
    from omero_storagemanager.tasks.handle import JobHandle

    old = os.umask(0o022)
    try:
        job = Job.objects.create(kind="scan")
        handle = JobHandle(job)
        handle.log("hello")
        handle.error("a problem at /OMERO/ManagedRepository/x")
        handle.files(["a", "b"])
        handle._log.close()
        folder = handle.dir
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(os.path.dirname(folder)).st_mode) == 0o700
        for name in ("job.log", "errors.txt", "files.txt"):
            assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o600, name
        backups = private_dir(str(tmp_path / "var" / "backups"))
        dump = private_file(os.path.join(backups, ".current.dump.tmp"))
        assert stat.S_IMODE(os.stat(backups).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(dump).st_mode) == 0o600
    finally:
        os.umask(old)


class _Recorded:
    closed = 0

    def close(self):
        type(self).closed += 1


def recorded_gateway():
    return _Recorded()


def test_the_service_session_is_closed_after_each_job(world, monkeypatch):
    from omero_storagemanager import settings
    from omero_storagemanager.tasks import handlers

    monkeypatch.setattr(settings, "GATEWAY_FACTORY", "tests.test_api_leaks.recorded_gateway")
    _Recorded.closed = 0
    job = Job.objects.create(kind="restore")  # no collections: nothing to restore
    handlers.restore(job, handle=None)
    assert _Recorded.closed == 1
    handlers.purge(Job.objects.create(kind="purge"), handle=None)
    assert _Recorded.closed == 2

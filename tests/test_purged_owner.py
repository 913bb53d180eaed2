"""Owners keep their purged collections (issue 20, manual 6.4): after purge moves a
collection to the archive user and group, its original owner and group still see it in
the Storage tab (state, size, copies, the restore button), a sync does not take it from
them, and restore gives it back to them in OMERO. The archive user and group are checked
against OMERO when an admin sets them.

The facility's groups serve: the archive group is "HCS Screening" with farid as the
archive user; the purged Project is one of chloe's in Cell Biology (alice owns the group).
"""
import psycopg2
import pytest

from omero_storagemanager import preferences
from omero_storagemanager.catalog.collections import parse_key
from omero_storagemanager.catalog.paths import RepositoryPaths
from omero_storagemanager.engine.archive import archive_collection
from omero_storagemanager.engine.purge import purge_collection
from omero_storagemanager.engine.restore import restore_collection
from omero_storagemanager.engine.sync import sync_collections
from omero_storagemanager.models import Collection, Location
from testbed.standin import StandInGateway
from tests.api_support import Api, data, point_app_at, standin_middleware, user_ids

API = "/storagemanager/api/v1/"


def group_id(facility, name):
    return next(int(gid) for gid, g in facility.truth.groups.items() if g["name"] == name)


@pytest.fixture
def world(facility, app_db, monkeypatch, tmp_path):
    point_app_at(facility, monkeypatch, tmp_path)
    conn = psycopg2.connect(facility.dsn)
    conn.set_session(readonly=True, autocommit=True)
    sync_collections(conn)
    with standin_middleware():
        yield conn
    conn.close()


def chloes_clean_project(facility):
    ids = user_ids(facility)
    cellbio = group_id(facility, "Cell Biology")
    for key, c in facility.truth.collections.items():
        if (c["owner_id"] == ids["chloe"] and c["group_id"] == cellbio and c["files"]
                and not any(f["missing"] or "db_size" in f or f["shared_with"]
                            or f["symlink_target"] for f in c["files"])):
            return key
    pytest.fail("the facility (seed 1) has no clean Project of chloe in Cell Biology")


def collection(key):
    kind, oid = parse_key(key)
    return Collection.objects.get(kind=kind, omero_id=oid)


def test_the_archive_user_and_group_are_checked_when_set(world, facility):
    ids = user_ids(facility)
    hcs, obrien = group_id(facility, "HCS Screening"), group_id(facility, "O'Brien Lab")
    admin = Api(ids["ingrid"])
    url = API + "admin/preferences/"

    def refused(values):
        response = admin.post(url, {"values": values})
        assert response.status_code == 400, response.content
        return data(response)["error"]

    # Asked of the server first (views/admin.py): "OMERO has no user with id 99999".
    assert "no user with id 99999" in refused({"archive_user_id": 99999})
    assert "no group with id 99999" in refused({"archive_group_id": 99999})
    assert "OMERO's own 'user' group" in refused({"archive_group_id": 1})
    assert "not a member" in refused({"archive_user_id": ids["dmitri"],
                                      "archive_group_id": obrien})
    assert preferences.get("archive_user_id") is None  # nothing saved by a refusal
    assert admin.post(url, {"values": {"archive_user_id": ids["farid"],
                                       "archive_group_id": hcs}}).status_code == 200
    # Changing one of the pair is checked against the other as saved.
    assert "not a member" in refused({"archive_user_id": ids["chloe"]})
    # Only admins choose them.
    assert Api(ids["alice"]).post(url, {"values": {"archive_user_id": None}}).status_code == 403


def test_owner_and_group_keep_seeing_a_purged_collection_and_get_it_back(
        world, facility, tmp_path):
    ids = user_ids(facility)
    hcs, cellbio = group_id(facility, "HCS Screening"), group_id(facility, "Cell Biology")
    key = chloes_clean_project(facility)
    mount = tmp_path / "disk"
    mount.mkdir()
    disk = Location.objects.create(name="Disk 1", type="hdd", mount=str(mount),
                                   max_bytes=10**12, current=True)
    disk.backend().initialize()
    paths = RepositoryPaths(facility.truth.data_dir, facility.truth.managed_dir)
    gateway = StandInGateway(facility.dsn, 0)
    kind, oid = parse_key(key)
    archive_collection(world, paths, collection(key), disk, log=lambda _: None)
    purge_collection(world, paths, collection(key), gateway, log=lambda _: None,
                     archive_user_id=ids["farid"], archive_group_id=hcs)
    moved = gateway.describe(kind, oid)
    assert (moved["owner_id"], moved["group_id"]) == (ids["farid"], hcs)
    sync_collections(world)  # OMERO now says farid / HCS Screening
    row = collection(key)
    assert (row.owner_id, row.group_id, row.owner_name) == (ids["chloe"], cellbio, "chloe")
    assert (row.original_owner_id, row.original_group_id) == (ids["chloe"], cellbio)

    for who in ("chloe", "alice"):  # the owner, and the owner of her group
        listed = data(Api(ids[who]).get(API + "collections/", per_page=200))["items"]
        [mine] = [c for c in listed if c["key"] == key]
        assert mine["state"] == "purged" and mine["archived_bytes"] > 0, (who, mine)
        assert mine["owner"]["name"] == "chloe" and mine["group"]["id"] == cellbio
        assert {"restore", "request_restore"} & set(mine["actions"]), (who, mine["actions"])
        detail = data(Api(ids[who]).get(f"{API}collections/{key}/"))
        assert [c["location"]["name"] for c in detail["copies"]] == ["Disk 1"]
        assert detail["restore_help"]
    # The archive user's own list is not where the owner's data turns up.
    farid = data(Api(ids["farid"]).get(API + "collections/", per_page=200))["items"]
    assert key not in {c["key"] for c in farid}

    restore_collection(collection(key), gateway, log=lambda _: None, paths=paths)
    back = gateway.describe(kind, oid)
    assert (back["owner_id"], back["group_id"]) == (ids["chloe"], cellbio)
    sync_collections(world)
    row = collection(key)
    assert (row.owner_id, row.group_id, row.original_owner_id) == (ids["chloe"], cellbio, None)
    assert row.state == Collection.ARCHIVED

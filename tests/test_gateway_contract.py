"""Contract of the gateway seam: the same assertions for the stand-in and a real OMERO.

The real server is used when these are set (an OMERO admin account, and a second
group and user the admin may move data to):
    OMERO_TEST_HOST, OMERO_TEST_PORT (4064), OMERO_TEST_USER, OMERO_TEST_PASSWORD,
    OMERO_TEST_OTHER_USER_ID, OMERO_TEST_OTHER_GROUP_ID
Without them the real-server cases are reported as not run (pytest -ra lists them).
"""
import os
from dataclasses import dataclass

import psycopg2
import pytest

from omero_storagemanager.gateway import STATE_NS, Gateway, GatewayError, gateway_for
from testbed.standin import StandInGateway

REAL_ENV = ("OMERO_TEST_HOST", "OMERO_TEST_USER", "OMERO_TEST_PASSWORD",
            "OMERO_TEST_OTHER_USER_ID", "OMERO_TEST_OTHER_GROUP_ID")


@dataclass
class Subject:
    """A gateway signed in as an admin, a Project it may change, and where to move it."""
    gateway: Gateway
    project_id: int
    other_user_id: int
    other_group_id: int
    non_admin: Gateway = None


def _standin_subject(facility):
    truth = facility.truth
    project = next(c for c in truth.collections.values() if c["kind"] == "project")
    other_user = next(int(uid) for uid in truth.users if int(uid) != project["owner_id"])
    other_group = next(int(gid) for gid in truth.groups if int(gid) != project["group_id"])
    return Subject(StandInGateway(facility.dsn, 0), project["id"], other_user, other_group,
                   non_admin=StandInGateway(facility.dsn, project["owner_id"]))


def _real_subject():
    missing = [name for name in REAL_ENV if not os.environ.get(name)]
    if missing:
        pytest.skip("not run: no real OMERO server configured (set %s)" % ", ".join(missing))
    from omero.gateway import BlitzGateway
    from omero.model import ProjectI
    from omero.rtypes import rstring

    conn = BlitzGateway(os.environ["OMERO_TEST_USER"], os.environ["OMERO_TEST_PASSWORD"],
                        host=os.environ["OMERO_TEST_HOST"],
                        port=int(os.environ.get("OMERO_TEST_PORT", "4064")), secure=True)
    assert conn.connect(), "could not log in to the OMERO test server"
    project = ProjectI()
    project.setName(rstring("storagemanager contract test"))
    project = conn.getUpdateService().saveAndReturnObject(project)
    return Subject(gateway_for(conn), project.id.val,
                   int(os.environ["OMERO_TEST_OTHER_USER_ID"]),
                   int(os.environ["OMERO_TEST_OTHER_GROUP_ID"]))


@pytest.fixture(params=["stand-in", "real OMERO"])
def subject(request, facility):
    if request.param == "stand-in":
        return _standin_subject(facility)
    return _real_subject()


def test_identity_of_an_admin(subject):
    gw = subject.gateway
    assert isinstance(gw.user_id(), int)
    assert gw.user_name()
    assert gw.is_admin() is True
    assert 0 in gw.member_of_groups()  # the system group makes an admin
    assert set(gw.leader_of_groups()) <= set(gw.member_of_groups())


def test_identity_of_a_plain_user(subject):
    if subject.non_admin is None:
        pytest.skip("not run: the real-server contract uses one admin account")
    gw = subject.non_admin
    assert gw.is_admin() is False
    assert 0 not in gw.member_of_groups()
    assert gw.member_of_groups(), "every OMERO user is in at least one group"


def test_rename_keeps_any_name_exactly(subject):
    gw, pid = subject.gateway, subject.project_id
    name = "(archived) Zellkern Färbung 'quoted' <b>&amp; 実験"
    gw.rename("project", pid, name)
    assert gw.describe("project", pid)["name"] == name


def test_state_annotation_set_replace_clear(subject):
    gw, pid = subject.gateway, subject.project_id
    assert gw.get_state("project", pid) is None
    gw.set_state("project", pid, [("state", "archived"), ("copies", "1")])
    assert gw.get_state("project", pid) == [("state", "archived"), ("copies", "1")]
    gw.set_state("project", pid, [("state", "purged"), ("note", "a=b; <x>")])
    assert gw.get_state("project", pid) == [("state", "purged"), ("note", "a=b; <x>")]
    gw.clear_state("project", pid)
    assert gw.get_state("project", pid) is None


def test_chown_and_chgrp_move_the_project(subject):
    gw, pid = subject.gateway, subject.project_id
    gw.chown("project", pid, subject.other_user_id)
    assert gw.describe("project", pid)["owner_id"] == subject.other_user_id
    gw.chgrp("project", pid, subject.other_group_id)
    assert gw.describe("project", pid)["group_id"] == subject.other_group_id


def test_unknown_objects_and_kinds_are_refused(subject):
    gw = subject.gateway
    with pytest.raises(GatewayError):
        gw.describe("project", 987654321)
    with pytest.raises(GatewayError):
        gw.rename("screen", 987654321, "x")
    with pytest.raises(GatewayError):
        gw.describe("dataset", subject.project_id)


def test_plain_user_may_not_move_data(subject):
    if subject.non_admin is None:
        pytest.skip("not run: the real-server contract uses one admin account")
    with pytest.raises(GatewayError):
        subject.non_admin.chown("project", subject.project_id, subject.other_user_id)


# -- stand-in specific: its writes are OMERO-shaped rows the catalog can read ----------

def test_standin_state_annotation_is_an_omero_map_annotation(facility):
    subject = _standin_subject(facility)
    subject.gateway.set_state("project", subject.project_id, [("state", "archived")])
    with psycopg2.connect(facility.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT a.discriminator, a.ns, v.name, v.value FROM projectannotationlink l"
            " JOIN annotation a ON a.id = l.child"
            " JOIN annotation_mapvalue v ON v.annotation_id = a.id"
            " WHERE l.parent = %s AND a.ns = %s", [subject.project_id, STATE_NS])
        rows = cur.fetchall()
    conn.close()
    assert rows == [("/map/", STATE_NS, "state", "archived")]


def test_standin_chown_moves_the_images_below(facility):
    subject = _standin_subject(facility)
    subject.gateway.chown("project", subject.project_id, subject.other_user_id)
    with psycopg2.connect(facility.dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT i.owner_id FROM image i"
            " JOIN datasetimagelink dl ON dl.child = i.id"
            " JOIN projectdatasetlink pl ON pl.child = dl.parent WHERE pl.parent = %s",
            [subject.project_id])
        owners = {row[0] for row in cur.fetchall()}
    conn.close()
    assert owners == {subject.other_user_id}


def test_gateway_for_wraps_a_blitz_connection_and_keeps_a_gateway():
    standin_like = StandInGateway.__new__(StandInGateway)
    assert gateway_for(standin_like) is standin_like

    class FakeConnLikeBlitz:
        c = "ice-client"

    wrapped = gateway_for(FakeConnLikeBlitz())
    assert type(wrapped).__name__ == "BlitzGatewayAdapter" and wrapped.c == "ice-client"

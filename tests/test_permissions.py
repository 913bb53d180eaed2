"""Access decisions from OMERO identity and group permission levels (stand-in gateway)."""
import psycopg2
import pytest

from omero_storagemanager import preferences
from omero_storagemanager.engine.sync import sync_collections
from omero_storagemanager.models import Collection
from omero_storagemanager.permissions import PRIVATE, Access, group_levels
from testbed.standin import StandInGateway


@pytest.fixture
def world(facility, app_db):
    conn = psycopg2.connect(facility.dsn)
    conn.set_session(readonly=True, autocommit=True)
    sync_collections(conn)
    yield conn
    conn.close()


def access(facility, conn, user_id):
    return Access.for_request(StandInGateway(facility.dsn, user_id), conn)


def members(facility, group_id):
    return [int(u) for u, user in facility.truth.users.items()
            if group_id in user["groups"] and not user.get("admin")]


def test_admin_sees_and_manages_everything(facility, world):
    admin = access(facility, world, 0)
    assert admin.visible().count() == Collection.objects.count()
    assert all(set(admin.actions(c)) >= {"scan", "archive", "purge"} for c in Collection.objects.all())


def test_owner_sees_own_and_requests_archive(facility, world):
    # An owner who does not lead the collection's group (a leader may do more: see
    # test_private_group_hides_other_members_collections), taken from the facility's
    # truth so that the checks below always run.
    users = {int(u): user for u, user in facility.truth.users.items()}
    plain = [c for c in Collection.objects.exclude(owner_id=0).order_by("kind", "omero_id")
             if c.owner_id in users and not users[c.owner_id].get("admin")
             and c.group_id not in {int(g) for g in users[c.owner_id]["owner_of"]}]
    assert plain, "the facility should have collections owned by plain group members"
    c = plain[0]
    owner = access(facility, world, c.owner_id)
    assert c.group_id not in owner.leader_of and not owner.admin
    assert owner.can_see(c)
    assert owner.actions(c) == ["scan", "request_archive"]
    assert not owner.may("archive", c) and not owner.may("purge", c)
    preferences.set_many({"require_approval": False})
    assert access(facility, world, c.owner_id).actions(c) == ["scan", "archive"]
    assert not access(facility, world, c.owner_id).may("purge", c)


def test_private_group_hides_other_members_collections(facility, world):
    levels = group_levels(world, {int(g) for g in facility.truth.groups})
    checked = 0
    for c in Collection.objects.all():
        others = [m for m in members(facility, c.group_id) if m != c.owner_id]
        for other in others:
            a = access(facility, world, other)
            if c.group_id in a.leader_of:
                assert a.can_see(c) and a.may("purge", c)
                continue
            expected = levels[c.group_id] != PRIVATE
            assert a.can_see(c) is expected, (c.key, other, levels[c.group_id])
            assert (c in a.visible()) is expected
            assert a.actions(c) == []  # seeing is not acting
            checked += 1
    assert checked, "the facility should have other members in some groups"
    assert any(level == PRIVATE for level in levels.values())


def test_visibility_own_and_all(facility, world):
    c = Collection.objects.exclude(owner_id=0).first()
    stranger = next(int(u) for u, user in facility.truth.users.items()
                    if c.group_id not in user["groups"] and not user.get("admin"))
    assert not access(facility, world, stranger).can_see(c)
    preferences.set_many({"visibility": "all"})
    assert access(facility, world, stranger).can_see(c)
    assert access(facility, world, stranger).actions(c) == []
    preferences.set_many({"visibility": "own"})
    a = access(facility, world, stranger)
    assert set(a.visible().values_list("owner_id", flat=True)) <= {stranger} | {
        o for o in Collection.objects.filter(group_id__in=a.leader_of).values_list("owner_id", flat=True)}


def test_bad_preferences_are_refused_whole(app_db):
    with pytest.raises(preferences.BadPreference, match="visibility"):
        preferences.set_many({"purge_rename": True, "visibility": "everyone"})
    assert preferences.get("purge_rename") is False  # nothing saved
    with pytest.raises(preferences.BadPreference, match="copies_required"):
        preferences.set_many({"copies_required": 0})
    with pytest.raises(preferences.BadPreference, match="admin_emails"):
        preferences.set_many({"admin_emails": ["not an address"]})

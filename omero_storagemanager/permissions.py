"""Who sees and does what, decided from OMERO: the user's identity, admin flag and
privileges, group memberships and ownerships (through the gateway) and the group's
permission level (from the OMERO database, through the catalogue). Every view, API
endpoint, command and task asks this module, on the server.

  - full admins (every OMERO admin privilege) see and do everything;
  - restricted ("light") admins see everything and do what their privileges allow
    (ACTION_PRIVILEGES); the app's own settings are for full admins;
  - the guest user (and OMERO.web's public user) is refused everything;
  - group owners manage their groups' collections (preference group_owners_manage);
  - a user sees their own collections, and other members' where the preference
    visibility is "group" and the group's OMERO level lets members see each other's
    data (anything but private), or everywhere with "all";
  - a user scans their own collections and asks for their archive and restore (or runs
    them at once when the preference require_approval is off); purge is for managers.
"""
from django.db.models import Q

from . import preferences
from .gateway import ALL_PRIVILEGES
from .models import Collection

PRIVATE = -120  # experimentergroup.permissions of a private group (rw----)
ACTIONS = ("scan", "archive", "purge", "restore", "request_archive", "request_restore")


GUEST_USER_ID = 1  # OMERO's built-in guest (Roles.guestId)
# What a restricted admin needs among OMERO's privileges to act on anyone's collection:
# archive writes the state annotation on others' data, purge deletes files of the
# managed repository, restore writes them back.
ACTION_PRIVILEGES = {
    "scan": frozenset(),
    "archive": frozenset({"WriteOwned"}),
    "purge": frozenset({"DeleteFile", "DeleteManagedRepo", "WriteOwned"}),
    "restore": frozenset({"WriteFile", "WriteManagedRepo", "WriteOwned"}),
}


def group_levels(conn, group_ids):
    """{group id: OMERO permissions}, from the catalogue."""
    from .catalog.people import group_levels as levels

    return levels(conn, group_ids)


def is_full_admin(gateway):
    """An OMERO admin holding every admin privilege (Gateway.is_admin() must be True
    itself: no other attribute of a connection is trusted)."""
    return gateway.is_admin() is True and frozenset(gateway.admin_privileges()) >= ALL_PRIVILEGES


class Access:
    def __init__(self, gateway, levels, prefs=None):
        self.user_id = gateway.user_id()
        self.user_name = gateway.user_name()
        omero_admin = gateway.is_admin() is True
        self.privileges = frozenset(gateway.admin_privileges()) if omero_admin else frozenset()
        self.admin = omero_admin and self.privileges >= ALL_PRIVILEGES
        self.restricted_admin = omero_admin and not self.admin
        self.member_of = set(gateway.member_of_groups())
        prefs = prefs or preferences.get_all()
        self.leader_of = set(gateway.leader_of_groups()) if prefs["group_owners_manage"] else set()
        self.visibility = prefs["visibility"]
        self.require_approval = prefs["require_approval"]
        self.shared_groups = {g for g in self.member_of if levels.get(g, PRIVATE) != PRIVATE}

    @classmethod
    def for_request(cls, gateway, conn):
        """An Access for the signed-in user; conn: a catalog connection (group levels), or
        a function opening one, called only when the levels matter: not for a user who
        sees everything (an admin's request then needs no OMERO database connection)."""
        access = cls(gateway, {})
        if not access.sees_all:
            levels = group_levels(conn() if callable(conn) else conn, access.member_of)
            access.shared_groups = {g for g in access.member_of
                                    if levels.get(g, PRIVATE) != PRIVATE}
        return access

    # -- seeing ------------------------------------------------------------------------
    def visible_filter(self):
        """A Q selecting the collections this user may see (for listing in SQL)."""
        if self.sees_all:
            return Q()
        rule = Q(owner_id=self.user_id) | Q(group_id__in=self.leader_of)
        if self.visibility == "group":
            rule |= Q(group_id__in=self.shared_groups)
        return rule

    def visible(self, queryset=None):
        queryset = Collection.objects.all() if queryset is None else queryset
        return queryset.filter(self.visible_filter())

    def can_see(self, collection):
        return self.can_see_owned(collection.owner_id, collection.group_id)

    @property
    def sees_all(self):
        # OMERO lets every admin, restricted ones too, read all data.
        return self.admin or self.restricted_admin or self.visibility == "all"

    def can_see_owned(self, owner_id, group_id):
        """Whether this user may see something of owner_id in group_id (a collection, or
        an OMERO object in none)."""
        return (self.sees_all or owner_id == self.user_id or group_id in self.leader_of
                or (self.visibility == "group" and group_id in self.shared_groups))

    # -- doing -------------------------------------------------------------------------
    def manages(self, collection):
        return self.admin or collection.group_id in self.leader_of

    def actions(self, collection):
        """What this user may do with the collection, in ACTIONS' words."""
        purged = collection.state in (Collection.PURGED, Collection.PARTIALLY_PURGED)
        if self.manages(collection):
            allowed = ["scan", "archive", "purge"] + (["restore"] if purged else [])
        elif collection.owner_id == self.user_id:
            allowed = ["scan"]
            if self.require_approval:
                allowed += ["request_archive"] + (["request_restore"] if purged else [])
            else:
                allowed += ["archive"] + (["restore"] if purged else [])
        else:
            allowed = []
        if self.restricted_admin and not self.manages(collection):
            allowed += [kind for kind in ("scan", "archive", "purge", "restore")
                        if self.privileged(kind) and (kind != "restore" or purged)]
            allowed = [a for a in ACTIONS if a in allowed]
        return allowed if not collection.gone else []

    def privileged(self, kind):
        """A restricted admin holding OMERO's privileges for this action on anyone's
        collection (full admins hold them all)."""
        return (self.admin or self.restricted_admin) and ACTION_PRIVILEGES[kind] <= self.privileges

    def may(self, action, collection):
        return self.can_see(collection) and action in self.actions(collection)

    def may_decide(self, request):
        """Approve or decline a user's request."""
        return self.manages(request.collection) or self.privileged(request.kind)


# -- decisions the views, commands and tasks share (issue 21: all of them here) ----------

def refusal(user_id, user_name):
    """Why this signed-in user may use nothing of the storage manager (OMERO's guest
    user, OMERO.web's public user), or None."""
    if user_id == GUEST_USER_ID:
        return "the guest account may not use the storage manager: sign in as yourself"
    from django.conf import settings as django_settings

    if (getattr(django_settings, "PUBLIC_ENABLED", False)
            and user_name == getattr(django_settings, "PUBLIC_USER", None)):
        return "the public user may not use the storage manager: sign in as yourself"
    return None


def may_try(access, kind, collection):
    """Whether the user may act on (or ask for) `kind` of this collection at all: its
    owner, a manager of its group, or a restricted admin with the privileges."""
    if access.manages(collection) or access.privileged(kind):
        return True
    return collection.owner_id == access.user_id and kind != "purge"


def manages_all(access, collections):
    """Admins, and managers of every collection listed (a job's log, retry, cancel)."""
    if access.admin:
        return True
    collections = list(collections)
    return bool(collections) and all(access.manages(c) for c in collections)


def visible_requests(access, queryset):
    """The archive/restore requests this user may see: their own, their managed groups',
    every one for admins (restricted admins: the kinds their privileges let them do)."""
    if access.admin:
        return queryset
    rule = Q(requested_by_id=access.user_id) | Q(collection__group_id__in=access.leader_of)
    kinds = [kind for kind in ("archive", "restore") if access.privileged(kind)]
    if kinds:
        rule |= Q(kind__in=kinds)
    return queryset.filter(rule)


def may_see_request(access, request):
    return (access.admin or request.requested_by_id == access.user_id
            or access.manages(request.collection) or access.privileged(request.kind))


def visible_jobs(access, queryset):
    """Jobs this user may see: admins all; others those they asked for and those on
    collections they may see."""
    if access.admin:
        return queryset
    visible = access.visible().values("pk")
    return queryset.filter(Q(requested_by_id=access.user_id)
                           | Q(collections__in=visible)).distinct()


def visible_keys(access, collections):
    """Keys of the collections (of a job) this user may see; the others are not named."""
    return [c.key for c in collections if access.can_see(c)]


def usage_people(access, members_of_led_groups):
    """Whose usage this user sees in statistics: None for everyone (admins), else
    themselves (everywhere) and, for group owners, their groups' members (counted in
    those groups only)."""
    if access.admin or access.restricted_admin:
        return None
    return {access.user_id} | set(members_of_led_groups)


def decides_some_requests(access):
    """Whether the approval queue is for this user: admins, group owners who manage,
    restricted admins privileged to archive or restore."""
    return (access.admin or bool(access.leader_of) or access.privileged("archive")
            or access.privileged("restore"))


def may_withdraw(access, request):
    """Only the user who asked withdraws a request, and only while it is pending."""
    from .models import Request

    return request.state == Request.PENDING and request.requested_by_id == access.user_id

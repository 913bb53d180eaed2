"""Who sees and does what, decided from OMERO: the user's identity, admin flag, group
memberships and ownerships (through the gateway) and the group's permission level (from
the OMERO database). Every view and API endpoint asks an Access, on the server.

  - admins see and do everything;
  - group owners manage their groups' collections (preference group_owners_manage);
  - a user sees their own collections, and other members' where the preference
    visibility is "group" and the group's OMERO level lets members see each other's
    data (anything but private), or everywhere with "all";
  - a user scans their own collections and asks for their archive and restore (or runs
    them at once when the preference require_approval is off); purge is for managers.
"""
from django.db.models import Q

from . import preferences
from .models import Collection

PRIVATE = -120  # experimentergroup.permissions of a private group (rw----)
ACTIONS = ("scan", "archive", "purge", "restore", "request_archive", "request_restore")


def group_levels(conn, group_ids):
    """{group id: OMERO permissions} from the OMERO database."""
    if not group_ids:
        return {}
    with conn.cursor() as cur:
        cur.execute("SELECT id, permissions FROM experimentergroup WHERE id = ANY(%s)",
                    [sorted(group_ids)])
        return dict(cur.fetchall())


class Access:
    def __init__(self, gateway, levels, prefs=None):
        self.user_id = gateway.user_id()
        self.user_name = gateway.user_name()
        self.admin = gateway.is_admin()
        self.member_of = set(gateway.member_of_groups())
        prefs = prefs or preferences.get_all()
        self.leader_of = set(gateway.leader_of_groups()) if prefs["group_owners_manage"] else set()
        self.visibility = prefs["visibility"]
        self.require_approval = prefs["require_approval"]
        self.shared_groups = {g for g in self.member_of if levels.get(g, PRIVATE) != PRIVATE}

    @classmethod
    def for_request(cls, gateway, conn):
        """An Access for the signed-in user; conn: a catalog connection (group levels)."""
        return cls(gateway, group_levels(conn, gateway.member_of_groups()))

    # -- seeing ------------------------------------------------------------------------
    def visible_filter(self):
        """A Q selecting the collections this user may see (for listing in SQL)."""
        if self.admin or self.visibility == "all":
            return Q()
        rule = Q(owner_id=self.user_id) | Q(group_id__in=self.leader_of)
        if self.visibility == "group":
            rule |= Q(group_id__in=self.shared_groups)
        return rule

    def visible(self, queryset=None):
        queryset = Collection.objects.all() if queryset is None else queryset
        return queryset.filter(self.visible_filter())

    def can_see(self, collection):
        return (self.admin or self.visibility == "all" or collection.owner_id == self.user_id
                or collection.group_id in self.leader_of
                or (self.visibility == "group" and collection.group_id in self.shared_groups))

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
        return allowed if not collection.gone else []

    def may(self, action, collection):
        return self.can_see(collection) and action in self.actions(collection)

    def may_decide(self, request):
        """Approve or decline a user's request."""
        return self.manages(request.collection)


def may_withdraw(access, request):
    """Only the user who asked withdraws a request, and only while it is pending."""
    from .models import Request

    return request.state == Request.PENDING and request.requested_by_id == access.user_id

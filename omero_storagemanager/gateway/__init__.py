"""The gateway seam: the only way the app talks to the OMERO server.

Reads of OMERO's data go through the catalog (SQL on the OMERO database). Everything
that needs the server itself goes through a `Gateway`: who is calling (identity, admin,
group membership and ownership) and the few writes the app makes to OMERO (rename,
change owner or group, the state map annotation).

In OMERO.web a view receives a BlitzGateway as `conn`; `gateway_for(conn)` wraps it in
`BlitzGatewayAdapter` (gateway/blitz.py), whose every method is one or two omero-py
calls. Tests and the demo pass a stand-in `Gateway` as `conn` instead (the
`login_required` decorator uses a `conn` it is given); the stand-in is backed by the
same OMERO-shaped database and must pass the same contract tests
(tests/test_gateway_contract.py).
"""
import abc

# Namespace of the map annotation that records a collection's archive state, so
# users see it in every OMERO client.
STATE_NS = "openmicroscopy.org/omero/storagemanager/state"

KINDS = {"project": "Project", "screen": "Screen"}

# OMERO's admin privileges (omero.model.AdminPrivilege, OMERO 5.4+): a full admin has
# them all; a restricted admin some.
ALL_PRIVILEGES = frozenset((
    "Chgrp", "Chown", "DeleteFile", "DeleteManagedRepo", "DeleteOwned", "DeleteScriptRepo",
    "ModifyGroup", "ModifyGroupMembership", "ModifyUser", "ReadSession", "Sudo",
    "WriteFile", "WriteManagedRepo", "WriteOwned", "WriteScriptRepo"))


class GatewayError(RuntimeError):
    """OMERO refused or failed an operation."""


class Gateway(abc.ABC):
    """What the app needs from the OMERO server, and nothing more."""

    # omeroweb's login_required closes `conn.c` after the view when it is set; a
    # stand-in has no Ice client.
    c = None

    # -- identity and permissions of the signed-in user ------------------------------
    @abc.abstractmethod
    def user_id(self):
        """The OMERO experimenter id of the signed-in user."""

    @abc.abstractmethod
    def user_name(self):
        """The login name (experimenter.omename)."""

    @abc.abstractmethod
    def is_admin(self):
        """True for OMERO administrators (members of the system group)."""

    @abc.abstractmethod
    def member_of_groups(self):
        """Ids of the groups the user is a member of."""

    @abc.abstractmethod
    def leader_of_groups(self):
        """Ids of the groups the user owns."""

    def admin_privileges(self):
        """OMERO's admin privileges of the signed-in user ("Chown", "DeleteFile", ...,
        as IAdmin.getCurrentAdminPrivileges lists them): every one of ALL_PRIVILEGES for
        a full admin, some for a restricted ("light") admin, none for anyone else."""
        raise NotImplementedError

    # -- reads ------------------------------------------------------------------------
    def user_exists(self, user_id):
        """Whether OMERO has an experimenter with this id."""
        raise NotImplementedError

    def group_exists(self, group_id):
        """Whether OMERO has a group with this id."""
        raise NotImplementedError

    def close(self):
        """End the session to OMERO, if this gateway opened one (a view's gateway is
        closed by OMERO.web; the service account's by whoever asked for it)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- a read, so writes can be checked ---------------------------------------------
    @abc.abstractmethod
    def describe(self, kind, oid):
        """{"name", "owner_id", "group_id"} of a Project or Screen, as OMERO has it now."""

    # -- writes to OMERO ------------------------------------------------------------
    @abc.abstractmethod
    def rename(self, kind, oid, name):
        """Set the name of a Project or Screen."""

    @abc.abstractmethod
    def chown(self, kind, oid, user_id):
        """Give a Project or Screen, with its contents, to another user."""

    @abc.abstractmethod
    def chgrp(self, kind, oid, group_id):
        """Move a Project or Screen, with its contents, to another group."""

    @abc.abstractmethod
    def set_state(self, kind, oid, pairs):
        """Replace the state map annotation (STATE_NS) on a Project or Screen.

        `pairs` is a list of (key, value) strings, kept in order.
        """

    @abc.abstractmethod
    def get_state(self, kind, oid):
        """The pairs of the state map annotation, or None when there is none."""

    @abc.abstractmethod
    def clear_state(self, kind, oid):
        """Remove the state map annotation, if any."""


def omero_class(kind):
    """'project' -> 'Project'; refuses anything that is not a Project or a Screen."""
    try:
        return KINDS[kind]
    except KeyError:
        raise GatewayError(f"not a Project or Screen: {kind!r}")


def gateway_for(conn):
    """The Gateway for a view's `conn`: a stand-in as it is, a BlitzGateway wrapped."""
    if isinstance(conn, Gateway):
        return conn
    from .blitz import BlitzGatewayAdapter

    return BlitzGatewayAdapter(conn)

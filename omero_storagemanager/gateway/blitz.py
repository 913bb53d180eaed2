"""The real Gateway: each method is a direct omero-py BlitzGateway call.

Kept this thin on purpose, so it is obviously right by reading: the logic lives in
the engine, which the stand-in lets us test without an OMERO server.
"""
from . import STATE_NS, Gateway, GatewayError, omero_class


class BlitzGatewayAdapter(Gateway):
    def __init__(self, conn):
        self.conn = conn
        self.c = conn.c  # lets omeroweb's decorator close the real connection

    def user_id(self):
        return self.conn.getUserId()

    def user_name(self):
        return self.conn.getUser().getName()

    def is_admin(self):
        return bool(self.conn.isAdmin())

    def member_of_groups(self):
        return list(self.conn.getEventContext().memberOfGroups)

    def leader_of_groups(self):
        return list(self.conn.getEventContext().leaderOfGroups)

    def admin_privileges(self):
        if not self.conn.isAdmin():
            return []
        return list(self.conn.getCurrentAdminPrivileges())

    def user_exists(self, user_id):
        self.conn.SERVICE_OPTS.setOmeroGroup(-1)
        return self.conn.getObject("Experimenter", int(user_id)) is not None

    def group_exists(self, group_id):
        self.conn.SERVICE_OPTS.setOmeroGroup(-1)
        return self.conn.getObject("ExperimenterGroup", int(group_id)) is not None

    def close(self):
        """Ends the service account's session (a view's conn is OMERO.web's to close)."""
        self.conn.close()

    def _object(self, kind, oid):
        # Admins act across groups: search all of them.
        self.conn.SERVICE_OPTS.setOmeroGroup(-1)
        obj = self.conn.getObject(omero_class(kind), int(oid))
        if obj is None:
            raise GatewayError(f"{omero_class(kind)}:{oid} not found or not visible")
        self.conn.SERVICE_OPTS.setOmeroGroup(obj.getDetails().group.id.val)
        return obj

    def describe(self, kind, oid):
        obj = self._object(kind, oid)
        details = obj.getDetails()
        return {"name": obj.getName(), "owner_id": details.owner.id.val,
                "group_id": details.group.id.val}

    def rename(self, kind, oid, name):
        obj = self._object(kind, oid)
        obj.setName(name)
        obj.save()

    def _wait(self, handle):
        try:
            self.conn._waitOnCmd(handle, loops=120, ms=500, failonerror=True,
                                 failontimeout=True)
        except Exception as exc:
            raise GatewayError(str(exc)) from exc
        finally:
            handle.close()

    def chown(self, kind, oid, user_id):
        self._object(kind, oid)
        self._wait(self.conn.chownObjects(omero_class(kind), [int(oid)], int(user_id)))

    def chgrp(self, kind, oid, group_id):
        self._object(kind, oid)
        self._wait(self.conn.chgrpObjects(omero_class(kind), [int(oid)], int(group_id)))

    def _state_annotations(self, obj):
        return list(obj.listAnnotations(ns=STATE_NS))

    def set_state(self, kind, oid, pairs):
        from omero.gateway import MapAnnotationWrapper

        obj = self._object(kind, oid)
        old = self._state_annotations(obj)
        ann = MapAnnotationWrapper(self.conn)
        ann.setNs(STATE_NS)
        ann.setValue([[str(k), str(v)] for k, v in pairs])
        ann.save()
        obj.linkAnnotation(ann)
        if old:
            self.conn.deleteObjects("Annotation", [a.getId() for a in old], wait=True)

    def get_state(self, kind, oid):
        annotations = self._state_annotations(self._object(kind, oid))
        if not annotations:
            return None
        return [tuple(pair) for pair in annotations[-1].getValue()]

    def clear_state(self, kind, oid):
        old = self._state_annotations(self._object(kind, oid))
        if old:
            self.conn.deleteObjects("Annotation", [a.getId() for a in old], wait=True)


def service_gateway():
    """A Gateway logged in to OMERO.server as the configured service account."""
    from omero.gateway import BlitzGateway

    from .. import settings

    if not settings.SERVICE_USER:
        raise GatewayError("no OMERO service account: set omero.web.storagemanager.service_user"
                           " and .service_password")
    host, port = settings.omero_server()
    conn = BlitzGateway(settings.SERVICE_USER, settings.SERVICE_PASSWORD, host=host, port=port,
                        secure=True)
    try:
        connected = conn.connect()  # Ice's exceptions when the server is not reached
    except BaseException:
        _close_quietly(conn)
        raise
    if not connected:
        _close_quietly(conn)
        raise GatewayError(f"cannot log in to OMERO.server {host}:{port} as "
                           f"{settings.SERVICE_USER}")
    return BlitzGatewayAdapter(conn)


def _close_quietly(conn):
    """Destroy a failed connection's Ice communicator now: left to the end of the
    process, Ice prints "communicator not destroyed during global destruction"."""
    try:
        conn.close(hard=False)
    except Exception:
        pass

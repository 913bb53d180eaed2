"""The service account's gateway, as the deployment configures it
(omero.web.storagemanager.gateway_factory), for what workers and the command line change
in OMERO; and the one-line form of omero-py's errors (Ice's exceptions span several
lines). Here, not in verbs/ or tasks/: both use it, and dependencies point down.
"""
import contextlib
import sys


def is_ice(exc):
    """An exception of Ice (omero-py's transport) or of OMERO.server (omero.ServerError
    is an Ice.UserException). Without omero-py loaded, none can be."""
    ice = sys.modules.get("Ice")
    return ice is not None and isinstance(exc, ice.Exception)


def error_line(exc):
    """What an exception says, in one line: Ice's and OMERO.server's exceptions span
    several (a class header, then their fields; a ServerError its server's stack trace)
    and are told by their class name and message."""
    if not is_ice(exc):
        return " ".join(str(exc).split()) or type(exc).__name__
    detail = " ".join(str(getattr(exc, "message", None) or "").split())
    if not detail:  # Ice's own: 'Ice.ConnectionRefusedException:\nConnection refused'
        fields = [line.strip() for line in str(exc).splitlines()[1:]]
        detail = "; ".join(f for f in fields if f not in ("{", "}") and not f.endswith("="))
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def omero_server_error(exc):
    """The one line saying that OMERO.server could not be reached or refused."""
    from .. import settings

    host, port = settings.omero_server()
    ice = sys.modules.get("Ice")
    if ice is not None and isinstance(exc, ice.LocalException):
        return f"cannot reach OMERO.server {host}:{port} ({error_line(exc)})"
    return f"OMERO.server {host}:{port} refused: {error_line(exc)}"


def admin_gateway():
    """The gateway for OMERO changes made from the command line (rename, chown, chgrp,
    state annotation): configured by the deployment (see settings.gateway_factory).
    An OMERO.server that cannot be reached is a GatewayError in one line, as any
    other failure of the gateway (omero-py raises Ice's exceptions)."""
    from .. import settings
    from ..gateway import GatewayError
    from importlib import import_module

    factory = settings.GATEWAY_FACTORY
    if not factory:
        return None
    module, _, name = factory.rpartition(".")
    make = getattr(import_module(module), name)
    try:
        return make()
    except Exception as exc:
        if not is_ice(exc):
            raise
        raise GatewayError(omero_server_error(exc)) from exc


@contextlib.contextmanager
def service_session():
    """admin_gateway() for the length of a with block, its session to OMERO.server
    closed after (None when the deployment configures no gateway)."""
    gateway = admin_gateway()
    try:
        yield gateway
    finally:
        close = getattr(gateway, "close", None)
        if close is not None:
            close()

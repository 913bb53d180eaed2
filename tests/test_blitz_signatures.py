"""The production gateway (gateway/blitz.py) against the installed omero-py: every call it
makes on a BlitzGateway, its service options, an object wrapper or a map annotation
exists there and takes the arguments given (names, number, keywords). The part that
cannot run here without an OMERO server is at least checked against the real library.
"""
import ast
import inspect
from pathlib import Path

import pytest

from omero_storagemanager.gateway import blitz

omero_gateway = pytest.importorskip("omero.gateway", reason="install omero-py (setup.py)")

SOURCE = Path(blitz.__file__)
# What each receiver is in blitz.py, as omero-py types it.
RECEIVERS = {
    "self.conn": omero_gateway.BlitzGateway,
    "conn": omero_gateway.BlitzGateway,
    "self.conn.SERVICE_OPTS": omero_gateway.ServiceOptsDict,
    "obj": omero_gateway.BlitzObjectWrapper,
    "ann": omero_gateway.MapAnnotationWrapper,
    "a": omero_gateway.AnnotationWrapper,
    "annotations[-1]": omero_gateway.MapAnnotationWrapper,
    "handle": None,  # an Ice proxy (omero.cmd.HandlePrx): generated code, checked below
}
CONSTRUCTED = {"BlitzGateway": omero_gateway.BlitzGateway,
               "MapAnnotationWrapper": omero_gateway.MapAnnotationWrapper}


def _calls():
    """(receiver text, method, number of positional args, keyword names, line)."""
    tree = ast.parse(SOURCE.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        keywords = [k.arg for k in node.keywords]
        if isinstance(node.func, ast.Attribute):
            receiver = ast.unparse(node.func.value)
            if receiver in RECEIVERS:
                yield receiver, node.func.attr, len(node.args), keywords, node.lineno
        elif isinstance(node.func, ast.Name) and node.func.id in CONSTRUCTED:
            yield node.func.id, "__init__", len(node.args), keywords, node.lineno


CALLS = sorted(set((r, m, n, tuple(k), line) for r, m, n, k, line in _calls()))


def test_the_gateway_makes_the_calls_this_test_knows():
    methods = {m for _, m, *_ in CALLS}
    # If blitz.py grows a call on a receiver this test does not know, RECEIVERS must learn it.
    assert {"getUserId", "getUser", "isAdmin", "getEventContext", "getObject",
            "chownObjects", "chgrpObjects", "deleteObjects", "_waitOnCmd",
            "getCurrentAdminPrivileges", "setOmeroGroup", "listAnnotations",
            "linkAnnotation", "setNs", "setValue", "save", "__init__", "close",
            "connect"} <= methods, methods


@pytest.mark.parametrize("receiver,method,positional,keywords,line", CALLS,
                         ids=[f"{c[0]}.{c[1]}@{c[4]}" for c in CALLS])
def test_each_call_matches_the_installed_omero_py(receiver, method, positional, keywords,
                                                  line):
    owner = CONSTRUCTED.get(receiver) or RECEIVERS[receiver]
    if owner is None:  # HandlePrx.close(): Ice's generated proxy method
        import omero.cmd

        assert hasattr(omero.cmd.HandlePrx, method), f"line {line}: HandlePrx.{method}"
        return
    function = getattr(owner, method, None)
    assert function is not None, f"blitz.py line {line}: {owner.__name__} has no {method}"
    signature = inspect.signature(function)
    try:
        signature.bind(None, *([None] * positional), **{k: None for k in keywords})
    except TypeError as exc:
        pytest.fail(f"blitz.py line {line}: {owner.__name__}.{method}{signature} does not "
                    f"take {positional} positional and {keywords}: {exc}")


def test_admin_privileges_come_back_as_names_omero_defines():
    """getCurrentAdminPrivileges answers AdminPrivilege values' names: those the app's
    ALL_PRIVILEGES lists must be OMERO's (omero.model.enums)."""
    import omero.model.enums as enums

    from omero_storagemanager.gateway import ALL_PRIVILEGES

    defined = {getattr(enums, name) for name in dir(enums) if name.startswith("AdminPrivilege")
               and isinstance(getattr(enums, name), str)}
    assert ALL_PRIVILEGES <= defined, ALL_PRIVILEGES - defined

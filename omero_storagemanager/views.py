"""Views: thin. They check who is asking, call the engine or the catalog, render.

Every view takes OMERO.web's `conn` (a BlitzGateway, or a stand-in Gateway in tests
and the demo) and turns it into a Gateway with `gateway_for`.
"""
import shutil

from django.http import JsonResponse
from omeroweb.decorators import login_required, render_response

from . import catalog, settings
from .gateway import gateway_for
from .models import Collection
from .version import __version__


def _repository_status():
    status = []
    for label, path in (("data_dir", settings.data_dir()), ("managed_dir", settings.managed_dir())):
        try:
            usage = shutil.disk_usage(path)
            status.append({"name": label, "path": path, "online": True,
                           "total_bytes": usage.total, "free_bytes": usage.free})
        except OSError as exc:
            status.append({"name": label, "path": path, "online": False,
                           "error": exc.strerror or str(exc)})
    return status


def _status(gw):
    db_ok, db_detail = catalog.ping()
    user = {"id": gw.user_id(), "name": gw.user_name(), "admin": gw.is_admin()}
    status = {
        "version": __version__,
        "demo": settings.DEMO,
        "user": user,
        "omero_db": {"reachable": db_ok},
        "collections": Collection.objects.filter(gone=False).count(),
    }
    # Paths, sizes and connection details are for admins only.
    if user["admin"]:
        status["omero_db"]["detail"] = db_detail
        status["repository"] = _repository_status()
    return status


@login_required()
@render_response()
def index(request, conn=None, **kwargs):
    gw = gateway_for(conn)
    return {"template": "omero_storagemanager/index.html", "status": _status(gw)}


@login_required()
def api_status(request, conn=None, **kwargs):
    return JsonResponse(_status(gateway_for(conn)))

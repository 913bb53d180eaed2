"""Demo only: a page that hosts the app's webclient plugins as the webclient does.

The webclient itself needs an OMERO server, so the demo cannot show it. This page
renders what the webclient's Data page gives a plugin: jQuery, jQuery UI tabs,
ome.csrf.js and ome.popup.js (with omeroweb_right_plugin / omeroweb_center_plugin) from
OMERO.web's own static files and includes, the right-hand tabs and center panels laid
out as webclient/base/base_container.html lays them out, and a tree whose clicks set
$("body").data("selected_objects.ome") and fire "selection_change.ome", as the
webclient's jsTree does. The plugins' templates are included unchanged, from
omero.web.ui.right_plugins and center_plugins (this app's entries only: OMERO's own
plugins need the server).
"""
from django.conf import settings as django_settings
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from omero_storagemanager import catalog
from testbed.demo_auth import SESSION_KEY

IMAGES_PER_DATASET = 12


def _plugins(entries):
    return [{"label": e[0], "include": e[1], "plugin_id": e[2]} for e in entries
            if e[1].startswith("omero_storagemanager/")]


def _tree():
    """Projects > Datasets > Images and Screens > Plates of the demo OMERO database."""
    conn = catalog.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT p.id, p.name, e.omename FROM project p"
                        " JOIN experimenter e ON e.id = p.owner_id ORDER BY p.id")
            projects = [{"id": i, "name": n, "owner": o, "datasets": []}
                        for i, n, o in cur.fetchall()]
            for project in projects:
                cur.execute("SELECT d.id, d.name FROM projectdatasetlink l JOIN dataset d"
                            " ON d.id = l.child WHERE l.parent = %s ORDER BY d.id", [project["id"]])
                for did, dname in cur.fetchall():
                    cur.execute("SELECT i.id, i.name FROM datasetimagelink l JOIN image i"
                                " ON i.id = l.child WHERE l.parent = %s ORDER BY i.id LIMIT %s",
                                [did, IMAGES_PER_DATASET])
                    images = [{"id": i, "name": n} for i, n in cur.fetchall()]
                    project["datasets"].append({"id": did, "name": dname, "images": images})
            cur.execute("SELECT s.id, s.name, e.omename FROM screen s"
                        " JOIN experimenter e ON e.id = s.owner_id ORDER BY s.id")
            screens = [{"id": i, "name": n, "owner": o, "plates": []} for i, n, o in cur.fetchall()]
            for screen in screens:
                cur.execute("SELECT p.id, p.name FROM screenplatelink l JOIN plate p"
                            " ON p.id = l.child WHERE l.parent = %s ORDER BY p.id", [screen["id"]])
                screen["plates"] = [{"id": i, "name": n} for i, n in cur.fetchall()]
    finally:
        conn.close()
    return projects, screens


@ensure_csrf_cookie
def webclient_host(request):
    if request.session.get(SESSION_KEY) is None:
        return HttpResponseRedirect("/demo/?url=" + request.get_full_path())
    projects, screens = _tree()
    context = {
        "ome": {"right_plugins": _plugins(getattr(django_settings, "RIGHT_PLUGINS", [])),
                "center_plugins": _plugins(getattr(django_settings, "CENTER_PLUGINS", []))},
        "projects": projects, "screens": screens,
        "user_id": request.session[SESSION_KEY],
    }
    return render(request, "testbed/webclient_host.html", context)

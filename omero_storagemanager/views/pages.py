"""The Storage tab's HTML pages. Each is a shell: its script (static/omero_storagemanager/
js/) fetches what it shows from the JSON API, which checks permissions again. The
overview is rendered on the server too, so it says something even without scripts.
"""
from .common import page
from .status import status


@page("omero_storagemanager/index.html")
def index(request, who):
    return {"status": status(who), "sm_page": "overview"}


@page("omero_storagemanager/collections.html")
def collections(request, who):
    return {"sm_page": "collections"}


@page("omero_storagemanager/statistics.html")
def statistics(request, who):
    return {"sm_page": "statistics"}


@page("omero_storagemanager/jobs.html")
def jobs(request, who):
    return {"sm_page": "jobs"}


@page("omero_storagemanager/admin/settings.html", admin=True)
def admin_settings(request, who):
    return {"sm_page": "admin", "sm_admin_page": "settings"}


@page("omero_storagemanager/admin/locations.html", admin=True)
def admin_locations(request, who):
    return {"sm_page": "admin", "sm_admin_page": "locations"}


@page("omero_storagemanager/admin/quotas.html", admin=True)
def admin_quotas(request, who):
    return {"sm_page": "admin", "sm_admin_page": "quotas"}


@page("omero_storagemanager/admin/tasks.html", admin=True)
def admin_tasks(request, who):
    return {"sm_page": "admin", "sm_admin_page": "tasks"}


@page("omero_storagemanager/admin/requests.html", manager=True)
def admin_requests(request, who):
    return {"sm_page": "admin", "sm_admin_page": "requests"}


@page("omero_storagemanager/admin/planner.html", admin=True)
def admin_planner(request, who):
    return {"sm_page": "admin", "sm_admin_page": "planner"}

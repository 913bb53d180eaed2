"""Demo sign-in: pick a user of the generated facility; the app then sees that user.

Only loaded by testbed.demo_settings. The app's views are untouched: this middleware
hands them a stand-in Gateway as `conn`, which omeroweb's login_required decorator
uses instead of connecting to an OMERO server.
"""
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from omero_storagemanager import catalog, settings
from testbed.standin import StandInGateway

SESSION_KEY = "storagemanager_demo_user_id"
APP_PREFIX = "omero_storagemanager."


def demo_users():
    """(id, omename, full name, admin) of every user of the demo OMERO database, OMERO's
    guest too (a public user of OMERO.web: the app refuses it everything, which the
    demo and the API fuzz show)."""
    conn = catalog.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT e.id, e.omename, e.firstname || ' ' || e.lastname,"
                " EXISTS (SELECT 1 FROM groupexperimentermap m"
                "         WHERE m.child = e.id AND m.parent = 0)"
                " FROM experimenter e ORDER BY e.id")
            return cur.fetchall()
    finally:
        conn.close()


class DemoSignInMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not getattr(view_func, "__module__", "").startswith(APP_PREFIX):
            return None
        user_id = request.session.get(SESSION_KEY)
        if user_id is None:
            methods = getattr(view_func, "api_methods", None)
            if methods is not None and request.method not in methods + (
                    ("HEAD",) if "GET" in methods else ()):
                return None  # the app answers a wrong method 405, to anyone
            if request.path.startswith("/storagemanager/api/"):
                return JsonResponse({"error": "not signed in (demo: sign in at /demo/)"},
                                    status=403)
            return HttpResponseRedirect("/demo/?url=" + request.get_full_path())
        # Django passes this same dict to the view: the decorator finds `conn` in it.
        view_kwargs["conn"] = StandInGateway(settings.omero_db_params(), int(user_id))
        return None


def sign_in(request):
    url = request.GET.get("url") or request.POST.get("url") or "/storagemanager/"
    if not url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}):
        url = "/storagemanager/"
    users = demo_users()
    if request.method == "POST":
        try:
            user_id = int(request.POST.get("user_id", ""))
        except ValueError:
            user_id = None
        if user_id in {u[0] for u in users}:
            request.session[SESSION_KEY] = user_id
            return HttpResponseRedirect(url)
        return render(request, "testbed/demo_sign_in.html",
                      {"users": users, "url": url, "error": "Choose a user from the list."},
                      status=400)
    return render(request, "testbed/demo_sign_in.html", {"users": users, "url": url})

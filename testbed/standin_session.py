"""Test seam for the Django test Client: a signed-in session carries a stand-in Gateway.

Tests add StandInSessionMiddleware (right after Django's SessionMiddleware) with
override_settings, put a user id in the session (`sign_in(client, user_id)`), and call
the app's real URLs through the full middleware stack, CSRF included. A session without
a user goes on untouched, so OMERO.web's own login_required handles anonymous callers.
Never loaded outside the tests.
"""
from omero_storagemanager import settings
from testbed.demo_auth import APP_PREFIX, SESSION_KEY
from testbed.standin import StandInGateway


class StandInSessionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user_id = request.session.get(SESSION_KEY)
        if user_id is not None and getattr(view_func, "__module__", "").startswith(APP_PREFIX):
            view_kwargs["conn"] = StandInGateway(settings.omero_db_params(), int(user_id))
        return None


def middleware_with_standin(middleware):
    """MIDDLEWARE with StandInSessionMiddleware right after SessionMiddleware."""
    middleware = list(middleware)
    if "testbed.standin_session.StandInSessionMiddleware" in middleware:
        return middleware
    at = middleware.index("django.contrib.sessions.middleware.SessionMiddleware") + 1
    return middleware[:at] + ["testbed.standin_session.StandInSessionMiddleware"] + middleware[at:]


def sign_in(client, user_id):
    """Make `client` a signed-in OMERO.web user (None: anonymous)."""
    session = client.session
    if user_id is None:
        session.pop(SESSION_KEY, None)
    else:
        session[SESSION_KEY] = int(user_id)
    session.save()
    from django.conf import settings as django_settings

    client.cookies[django_settings.SESSION_COOKIE_NAME] = session.session_key
    return client

"""Django settings of the demo ONLY: never loaded in production.

The demo has no OMERO server, so nobody can sign in the OMERO way. These settings are
the real omeroweb.settings (built from the demo OMERODIR's config.xml) plus:
  - DemoSignInMiddleware: a visitor picks a demo user on /demo/ and every request to
    the app then receives a stand-in Gateway for that user as `conn` (the same seam
    the tests use), and every page is labelled as a demo;
  - WhiteNoise, so gunicorn serves the static files without nginx.
"""
from omeroweb.settings import *  # noqa: F401,F403
from omeroweb.settings import MIDDLEWARE

ROOT_URLCONF = "testbed.demo_urls"

_session = MIDDLEWARE.index("django.contrib.sessions.middleware.SessionMiddleware")
MIDDLEWARE = (
    ("whitenoise.middleware.WhiteNoiseMiddleware",)
    + MIDDLEWARE[: _session + 1]
    + ("testbed.demo_auth.DemoSignInMiddleware",)
    + MIDDLEWARE[_session + 1:]
)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# For the sign-in page's template (testbed has no models).
INSTALLED_APPS = INSTALLED_APPS + ("testbed",)  # noqa: F405

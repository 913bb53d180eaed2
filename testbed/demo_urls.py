"""URLs of the demo: OMERO.web's own, plus the demo sign-in page and the page hosting
the webclient plugins (testbed/webclient_host.py)."""
from django.urls import include, path
from django.views.generic import RedirectView

from testbed import demo_auth, webclient_host

urlpatterns = [
    path("", RedirectView.as_view(url="/demo/", permanent=False)),
    path("demo/", demo_auth.sign_in, name="storagemanager_demo_sign_in"),
    path("demo/webclient/", webclient_host.webclient_host, name="storagemanager_demo_webclient"),
    path("", include("omeroweb.urls")),
]

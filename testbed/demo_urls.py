"""URLs of the demo: OMERO.web's own, plus the demo sign-in page."""
from django.urls import include, path
from django.views.generic import RedirectView

from testbed import demo_auth

urlpatterns = [
    path("", RedirectView.as_view(url="/demo/", permanent=False)),
    path("demo/", demo_auth.sign_in, name="storagemanager_demo_sign_in"),
    path("", include("omeroweb.urls")),
]

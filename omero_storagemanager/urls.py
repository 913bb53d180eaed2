"""URLs, mounted by OMERO.web under /<app label>/ (/storagemanager/).

URL names carry the app prefix so they never clash with OMERO.web's own.
"""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="storagemanager_index"),
    path("api/v1/status/", views.api_status, name="storagemanager_api_status"),
]

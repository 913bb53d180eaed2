"""What the API tests share: a Django test Client through the full middleware stack
(CSRF enforced) with the stand-in gateway as the signed-in user, and a small world on
the module's generated facility (collections synced, a location, a copy, a job, a
request).

The facility (testbed/generator.py, seed 1) gives every role the tests need:
  Cell Biology (read-annotate): alice owns the group; chloe and bob are members.
  O'Brien Lab (private): eve owns it; chloe is a member.
  ingrid is an OMERO admin.
"""
import json
import secrets

import psycopg2
from django.conf import settings as django_settings
from django.test import Client, override_settings

from omero_storagemanager import settings
from omero_storagemanager.engine.sync import sync_collections
from testbed.standin_session import middleware_with_standin, sign_in

CSRF = secrets.token_hex(16)  # a 32-character secret: cookie and header agree


def user_ids(facility):
    return {u["omename"]: int(uid) for uid, u in facility.truth.users.items()}


def point_app_at(facility, monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "OMERO_DB", {"dsn": facility.dsn})
    monkeypatch.setattr(settings, "DATA_DIR", facility.truth.data_dir)
    monkeypatch.setattr(settings, "MANAGED_DIR", facility.truth.managed_dir)
    monkeypatch.setattr(settings, "VAR_DIR", str(tmp_path / "var"))


def sync(facility):
    conn = psycopg2.connect(facility.dsn)
    conn.set_session(readonly=True, autocommit=True)
    try:
        sync_collections(conn)
    finally:
        conn.close()


def standin_middleware():
    """override_settings adding the stand-in session middleware; use it around the Api
    clients of a test (one per test: nested overrides must unwind in order)."""
    return override_settings(MIDDLEWARE=middleware_with_standin(django_settings.MIDDLEWARE))


class Api:
    """Calls the app's real URLs as one user (None: anonymous), CSRF enforced. Create it
    inside standin_middleware()."""

    def __init__(self, user_id):
        self.client = Client(enforce_csrf_checks=True)
        if user_id is not None:
            sign_in(self.client, user_id)
        self.client.cookies[django_settings.CSRF_COOKIE_NAME] = CSRF

    def get(self, path, **params):
        return self.client.get(path, params)

    def post(self, path, body=None, csrf=True):
        headers = {"HTTP_X_CSRFTOKEN": CSRF} if csrf else {}
        return self.client.post(path, json.dumps(body or {}), content_type="application/json",
                                **headers)


def data(response):
    return json.loads(response.content)

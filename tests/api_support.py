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


# A restricted ("light") OMERO admin, added to a module's facility by the tests that need
# one: in the system group, lacking RITA_LACKS, stored as OMERO stores them.
RITA = 900
RITA_LACKS = ("DeleteFile", "DeleteManagedRepo", "WriteManagedRepo", "Sudo")


def omero_sql(facility, sql, params=()):
    """Run one statement on the facility's OMERO-shaped database (rows, or None)."""
    conn = psycopg2.connect(facility.dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def add_restricted_admin(facility):
    if omero_sql(facility, "SELECT 1 FROM experimenter WHERE id = %s", [RITA]):
        return
    omero_sql(facility, "INSERT INTO experimenter (id, permissions, firstname, lastname,"
                        " omename, ldap, version) VALUES (%s, 0, 'Rita', 'Light', 'rita',"
                        " false, 0)", [RITA])
    top = omero_sql(facility, "SELECT coalesce(max(id), 0) FROM groupexperimentermap")[0][0]
    for index, group in enumerate((0, 1)):  # system, user
        omero_sql(facility, "INSERT INTO groupexperimentermap (id, permissions, owner, version,"
                            " child, parent, child_index) VALUES (%s, -52, false, 0, %s, %s, %s)",
                  [top + 1 + index, RITA, group, index])
    for index, name in enumerate(RITA_LACKS):
        omero_sql(facility, "INSERT INTO experimenter_config (experimenter_id, name, value,"
                            " index) VALUES (%s, %s, 'false', %s)",
                  [RITA, "AdminPrivilege:" + name, index])



def disk_location(folder, name="disk", max_bytes=10**12, current=True):
    """A hard-disk Location mounted at `folder` (made if missing) with its <id>/read and
    <id>/write folders, as an admin would have set it up."""
    from omero_storagemanager.models import Location

    folder.mkdir(parents=True, exist_ok=True)
    location = Location.objects.create(name=name, type="hdd", mount=str(folder),
                                       max_bytes=max_bytes, current=current)
    for sub in ("read", "write"):
        (folder / str(location.pk) / sub).mkdir(parents=True, exist_ok=True)
    return location

"""The Storage page and the status API, through OMERO.web's real decorators and URLs."""
import json

import pytest
from django.test import Client, RequestFactory
from django.urls import resolve

from omero_storagemanager import settings
from omero_storagemanager.models import Collection
from testbed.standin import StandInGateway


@pytest.fixture
def use_facility_db(facility, monkeypatch):
    """Point the app's catalog at this module's generated OMERO database."""
    monkeypatch.setattr(settings, "OMERO_DB", {"dsn": facility.dsn})
    return facility


def _call(path, gateway):
    """Resolve the URL as OMERO.web would and call the view with a stand-in `conn`."""
    match = resolve(path)
    request = RequestFactory().get(path)
    return match.func(request, *match.args, conn=gateway, **match.kwargs)


def _admin_and_user(facility):
    users = facility.truth.users
    plain = next(int(uid) for uid, u in users.items() if 0 not in u["groups"] and int(uid) > 1)
    return StandInGateway(facility.dsn, 0), StandInGateway(facility.dsn, plain)


def test_anonymous_visitor_is_sent_to_omero_login():
    response = Client().get("/storagemanager/")
    assert response.status_code == 302
    assert "/webclient/login/" in response["Location"]


def test_anonymous_api_call_is_refused():
    response = Client().get("/storagemanager/api/v1/status/")
    assert response.status_code in (302, 403)


def test_index_renders_status_for_an_admin(use_facility_db, app_db):
    Collection.objects.create(kind="project", omero_id=1, owner_id=2, group_id=3, name="p")
    admin, _ = _admin_and_user(use_facility_db)
    response = _call("/storagemanager/", admin)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Storage" in html and "reachable" in html and "unreachable" not in html
    assert settings.data_dir() in html  # admins see the repository paths


def test_status_api_hides_paths_from_plain_users(use_facility_db, app_db):
    admin, user = _admin_and_user(use_facility_db)
    as_admin = json.loads(_call("/storagemanager/api/v1/status/", admin).content)
    as_user = json.loads(_call("/storagemanager/api/v1/status/", user).content)
    assert as_admin["user"]["admin"] is True and as_user["user"]["admin"] is False
    assert as_admin["omero_db"]["reachable"] is True and as_user["omero_db"]["reachable"] is True
    assert "repository" in as_admin and "repository" not in as_user
    assert "detail" not in as_user["omero_db"]
    assert as_user["user"]["id"] == user.user_id()


def test_status_reports_an_unreachable_omero_database(use_facility_db, monkeypatch, app_db):
    admin, _ = _admin_and_user(use_facility_db)
    monkeypatch.setattr(settings, "OMERO_DB", {"host": "127.0.0.1", "port": "1",
                                               "name": "omero", "user": "omero",
                                               "password": "s3cret-pw"})
    body = _call("/storagemanager/api/v1/status/", admin).content.decode()
    status = json.loads(body)
    assert status["omero_db"]["reachable"] is False
    assert "127.0.0.1:1/omero" in status["omero_db"]["detail"]
    assert "s3cret-pw" not in body  # never a password in a page

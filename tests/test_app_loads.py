"""The app loads inside the real omeroweb.settings, configured the `omero config` way."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.urls import reverse

from testbed.omerodir import write_config

REPO = Path(__file__).resolve().parent.parent


def test_app_is_installed_by_omero_web_apps():
    assert django_settings.SETTINGS_MODULE == "omeroweb.settings"
    assert "omero_storagemanager" in django_settings.INSTALLED_APPS
    assert "django_q" in django_settings.INSTALLED_APPS
    config = apps.get_app_config("storagemanager")
    assert config.name == "omero_storagemanager"
    assert config.default_auto_field == "django.db.models.BigAutoField"


def test_urls_reverse_under_the_app_label():
    assert reverse("storagemanager_index") == "/storagemanager/"
    assert reverse("storagemanager_api_status") == "/storagemanager/api/v1/status/"


def test_top_link_points_at_the_app():
    links = {link[0]: link[1] for link in django_settings.TOP_LINKS}
    assert links["Storage"] == "storagemanager_index"
    assert "Data" in links  # OMERO.web's own links are kept


def test_app_settings_are_parsed_with_types(omerodir):
    from omero_storagemanager import settings

    assert settings.INCLUDE_ATTACHMENTS is True
    assert settings.COPIES_REQUIRED == 1
    assert os.path.isabs(settings.data_dir())
    params = settings.omero_db_params()
    assert params["dbname"] == "omero_session" and params["host"] == "127.0.0.1"


def _load_settings_in_subprocess(omerodir, code):
    env = dict(os.environ, OMERODIR=str(omerodir), DJANGO_SETTINGS_MODULE="omeroweb.settings",
               PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_fresh_process_loads_app_and_settings(tmp_path):
    write_config(tmp_path, {
        "omero.web.apps": ["omero_storagemanager"],
        "omero.web.storagemanager.copies_required": "2",
        "omero.web.storagemanager.include_attachments": "false",
        "omero.db.host": "omero-db.example.org",
        "omero.db.name": "omero_prod",
        "omero.data.dir": "/srv/OMERO",
    })
    proc = _load_settings_in_subprocess(tmp_path, (
        "import django, json; django.setup();"
        "from omero_storagemanager import settings as s;"
        "print(json.dumps([s.COPIES_REQUIRED, s.INCLUDE_ATTACHMENTS, s.omero_db_params(),"
        " s.data_dir(), s.managed_dir()]))"))
    assert proc.returncode == 0, proc.stderr
    copies, attachments, db, data_dir, managed_dir = json.loads(proc.stdout.splitlines()[-1])
    assert copies == 2 and attachments is False
    # No app setting for the database: the server's omero.db.* is used.
    assert db["host"] == "omero-db.example.org" and db["dbname"] == "omero_prod"
    assert data_dir == "/srv/OMERO" and managed_dir == "/srv/OMERO/ManagedRepository"


@pytest.mark.parametrize("key, value", [
    ("omero.web.storagemanager.copies_required", "0"),
    ("omero.web.storagemanager.copies_required", "two"),
    ("omero.web.storagemanager.omero_db", "[1, 2]"),
    ("omero.web.storagemanager.data_dir", "relative/path"),
    ("omero.web.storagemanager.include_attachments", "maybe"),
])
def test_malformed_setting_stops_start_up_naming_the_key(tmp_path, key, value):
    write_config(tmp_path, {"omero.web.apps": ["omero_storagemanager"], key: value})
    proc = _load_settings_in_subprocess(tmp_path, "import django; django.setup()")
    assert proc.returncode != 0
    assert key in proc.stderr, proc.stderr[-2000:]


def test_migrations_match_models():
    from django.core.management import call_command

    # Exits non-zero (SystemExit) when a model change lacks its migration.
    call_command("makemigrations", "storagemanager", "--check", "--dry-run", verbosity=0)

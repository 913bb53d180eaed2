"""An OMERODIR for OMERO.web with this app enabled, as an admin's `omero config` makes it.

The config is written with omero-py's own ConfigXml (what `omero config set` uses),
so OMERO.web reads it exactly as in production.
"""
import json
from pathlib import Path

DEFAULT_TOP_LINKS = [
    ["Data", "webindex", {"title": "Browse Data via Projects, Tags etc"}],
    ["History", "history", {"title": "History"}],
    ["Help", "https://help.openmicroscopy.org/",
     {"title": "Open OMERO user guide in a new tab", "target": "new"}],
]


# OMERO.web's default right-hand plugins, then the app's (README: "webclient plugins").
RIGHT_PLUGINS = [
    ["Acquisition", "webclient/data/includes/right_plugin.acquisition.js.html", "metadata_tab"],
    ["Preview", "webclient/data/includes/right_plugin.preview.js.html", "preview_tab"],
    ["Storage", "omero_storagemanager/webclient_plugins/right_plugin.storage.js.html",
     "storage_tab"],
]
CENTER_PLUGINS = [
    ["Storage", "omero_storagemanager/webclient_plugins/center_plugin.storage.js.html",
     "storage_center"],
]


def q_cluster(name="storagemanager", workers=2):
    """django-q2 settings: ORM broker on the app's database.

    retry must exceed timeout, or a long task is delivered twice while running.
    """
    return {
        "name": name,
        "orm": "default",
        "workers": workers,
        "timeout": 6 * 3600,
        "retry": 6 * 3600 + 600,
        "max_attempts": 0,
        "catch_up": False,
        "poll": 0.5,
    }


def web_config(*, app_db, omero_db, data_dir, managed_dir, var_dir=None, extra=None):
    """The omero config keys of an OMERO.web with this app and django-q2.

    app_db: Django DATABASES['default'] dict; omero_db: libpq keywords of the OMERO
    database as the app setting takes them.
    """
    config = {
        "omero.web.apps": ["omero_storagemanager", "django_q"],
        "omero.web.databases": {"default": app_db},
        "omero.web.ui.top_links": DEFAULT_TOP_LINKS + [
            ["Storage", "storagemanager_index",
             {"title": "Storage usage, archives and restores"}]],
        "omero.web.ui.right_plugins": RIGHT_PLUGINS,
        "omero.web.ui.center_plugins": CENTER_PLUGINS,
        "omero.web.django_additional_settings": [["Q_CLUSTER", q_cluster()]],
        "omero.web.storagemanager.omero_db": omero_db,
        "omero.web.storagemanager.data_dir": str(data_dir),
        "omero.web.storagemanager.managed_dir": str(managed_dir),
        # No OMERO server here: OMERO changes go through the stand-in gateway.
        "omero.web.storagemanager.gateway_factory": "testbed.standin.admin_gateway",
    }
    if var_dir:
        config["omero.web.storagemanager.var_dir"] = str(var_dir)
    config.update(extra or {})
    return config


def write_config(omerodir, config):
    """Write config.xml under OMERODIR with ConfigXml, as `omero config set` would."""
    from omero.config import ConfigXml

    grid = Path(omerodir) / "etc" / "grid"
    grid.mkdir(parents=True, exist_ok=True)
    (Path(omerodir) / "var" / "log").mkdir(parents=True, exist_ok=True)
    xml = ConfigXml(str(grid / "config.xml"))
    try:
        for key, value in config.items():
            xml[key] = value if isinstance(value, str) else json.dumps(value)
    finally:
        xml.close()
    return grid / "config.xml"


def django_db(server, name):
    """Django DATABASES entry for a database on a testbed PostgresServer."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "HOST": server.host,
        "PORT": str(server.port),
        "USER": "postgres",
        "PASSWORD": "",
    }


def libpq_params(server, name):
    return {"host": server.host, "port": server.port, "name": name, "user": "postgres"}

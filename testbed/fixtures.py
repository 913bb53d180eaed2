"""pytest plugin of the test bed: real PostgreSQL, the real omeroweb.settings, OMERO-shaped
databases and generated facilities.

At start-up (pytest_configure, before any test module imports Django models) it:
  1. starts one PostgreSQL server for the whole run (testbed/pg.py),
  2. creates the app's Django database and an empty OMERO-shaped database,
  3. writes an OMERODIR whose config.xml enables this app in OMERO.web, as an admin's
     `omero config` would,
  4. sets DJANGO_SETTINGS_MODULE=omeroweb.settings, runs django.setup() and migrates.
"""
import os
import re
import tempfile
from pathlib import Path

import pytest

from testbed.omerodir import django_db, libpq_params, web_config, write_config
from testbed.pg import PostgresServer

APP_DB = "omeroweb_app"
SESSION_OMERO_DB = "omero_session"

_state = {}


def pytest_configure(config):
    if "server" in _state:
        return
    base = Path(tempfile.mkdtemp(prefix="omero-sm-test-"))
    base.chmod(0o755)
    server = PostgresServer(base / "pg").start()
    _state.update(server=server, base=base)

    from testbed.omerodb import create_omero_database

    server.create_database(APP_DB)
    create_omero_database(server, SESSION_OMERO_DB)
    omerodir = base / "omerodir"
    data_dir = base / "OMERO"
    (data_dir / "ManagedRepository").mkdir(parents=True)
    write_config(omerodir, web_config(
        app_db=django_db(server, APP_DB),
        omero_db=libpq_params(server, SESSION_OMERO_DB),
        data_dir=data_dir,
        managed_dir=data_dir / "ManagedRepository",
        var_dir=base / "var",
        # Backups use the test server's own clients (the machine's may be older).
        extra={"omero.web.storagemanager.pg_bin_dir": str(server.bindir)},
    ))
    os.environ["OMERODIR"] = str(omerodir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "omeroweb.settings"
    _state.update(omerodir=omerodir, data_dir=data_dir)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def pytest_unconfigure(config):
    server = _state.pop("server", None)
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def pg_server():
    """The run's PostgreSQL server (started in pytest_configure)."""
    return _state["server"]


@pytest.fixture(scope="session")
def omerodir():
    """The OMERODIR whose config.xml the running omeroweb.settings was built from."""
    return _state["omerodir"]


@pytest.fixture(scope="module")
def module_db_name(request):
    """A database name unique to the test module (databases are per module)."""
    name = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.lower())
    return f"m_{name}"[:60]


@pytest.fixture
def app_db():
    """The app's Django database, emptied of the app's rows after the test."""
    from django.apps import apps
    from django.db import connection

    yield connection
    tables = [m._meta.db_table for m in apps.get_app_config("storagemanager").get_models()]
    tables += [m._meta.db_table for m in apps.get_app_config("django_q").get_models()]
    # Ids keep growing (no RESTART IDENTITY): a cluster still running may acknowledge an
    # old task by id after the truncation, and must not hit a new task with that id.
    with connection.cursor() as cur:
        cur.execute("TRUNCATE {} CASCADE".format(
            ", ".join('"%s"' % t for t in tables)))


# -- OMERO-shaped databases and generated facilities (testbed.omerodb, testbed.generator) --

class OmeroDb:
    """An OMERO-shaped database on the run's server: name, dsn, connect()."""

    def __init__(self, server, name, dsn):
        self.server, self.name, self.dsn = server, name, dsn

    def connect(self):
        return self.server.connect(self.name)


class Facility(OmeroDb):
    """A generated facility: its database, its root directory and its Truth."""

    def __init__(self, server, name, dsn, root, truth):
        super().__init__(server, name, dsn)
        self.root, self.truth = root, truth


@pytest.fixture(scope="module")
def omero_db(pg_server, module_db_name):
    """An empty OMERO-shaped database (schema and OMERO's built-in rows) for the module."""
    from testbed.omerodb import create_omero_database

    dsn = create_omero_database(pg_server, module_db_name)
    yield OmeroDb(pg_server, module_db_name, dsn)
    pg_server.drop_database(module_db_name)


@pytest.fixture(scope="module")
def facility(pg_server, module_db_name, tmp_path_factory):
    """A freshly generated facility (seed 1) for the module: database and repository."""
    from testbed.generator import generate_facility
    from testbed.omerodb import create_omero_database

    name = module_db_name[:58] + "_fac"
    dsn = create_omero_database(pg_server, name)
    root = tmp_path_factory.mktemp("facility")
    truth = generate_facility(dsn, root, seed=1)
    yield Facility(pg_server, name, dsn, root, truth)
    pg_server.drop_database(name)


# -- S3 (issue 23): one SeaweedFS server per run, started on first use ------------------

@pytest.fixture(scope="session")
def s3_server():
    """The run's S3 server (testbed/seaweed.py), started when a test first asks for it;
    a test run without the `weed` binary fails here saying what to install."""
    from testbed.seaweed import SeaweedServer

    server = SeaweedServer(Path(_state["base"]) / "s3").start()
    yield server
    server.destroy()


@pytest.fixture
def s3_bucket(s3_server, request):
    """A new, empty bucket for one test (its name from the test's)."""
    name = "t" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-") \
        + "-" + os.urandom(3).hex()
    s3_server.client().create_bucket(Bucket=name)
    return name

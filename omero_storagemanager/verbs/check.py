"""check: is the app configured right? OMERO database, repository, app database."""
import os

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from .. import catalog, settings

HELP = "check the configuration; exit 1 on any problem"


def add_arguments(parser):
    pass


def run(command, options):
    problems = 0

    def report(ok, what, detail):
        nonlocal problems
        problems += not ok
        command.stdout.write(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}")

    ok, detail = catalog.ping()
    report(ok, "OMERO database", detail)
    for label, path in (("data_dir", settings.data_dir()), ("managed_dir", settings.managed_dir())):
        readable = os.path.isdir(path) and os.access(path, os.R_OK | os.X_OK)
        report(readable, label, path if readable else f"{path} is not a readable directory")
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        report(not pending, "app database",
               "migrated" if not pending else f"{len(pending)} migrations to apply: run migrate")
    except Exception as exc:  # any database error is a configuration problem here
        report(False, "app database", f"unreachable: {exc}".splitlines()[0])
    try:
        from ..engine.pgtools import BackupError, find_program

        path, client, server = find_program("pg_dump", connection)
        report(True, "backup tools", f"{path} (PostgreSQL {client}) for server {server}")
    except BackupError as exc:
        report(False, "backup tools", str(exc))
    except Exception as exc:  # the database's own failure is reported above
        report(False, "backup tools", f"unknown: {exc}".splitlines()[0])
    return 1 if problems else 0

"""restore: bring purged files back to their original paths, verified.

    storagemanager restore Project:12

When a copy is not reachable (a disk not connected, a tape copy not in the read cache)
it says what it waits for and exits 3; run it again when the files are there.
"""
from .. import settings
from ..engine.locks import CollectionBusy
from ..engine.restore import RestoreError, RestoreWaiting, restore_collection
from ..gateway.service import service_session
from .common import collections_for, keyed, open_catalog, repository_paths

HELP = "restore purged collections"
WAITING = 3


def add_arguments(parser):
    parser.add_argument("collections", nargs="+", metavar="COLLECTION")


def run(command, options):
    conn = open_catalog()
    try:
        return _restore_all(command, conn, collections_for(conn, options["collections"]))
    finally:
        conn.close()


def _restore_all(command, conn, collections):
    code = 0
    with service_session() as gateway:
        for collection in collections:
            try:
                restore_collection(collection, gateway, log=command.stdout.write,
                                   workers=settings.COPY_WORKERS, paths=repository_paths(),
                                   conn=conn)
            except RestoreWaiting as exc:
                command.stdout.write(f"{collection.key}: waiting: {exc}")
                code = max(code, WAITING)
            except (RestoreError, CollectionBusy) as exc:
                command.stderr.write(keyed(collection, exc))
                code = 1
    return code

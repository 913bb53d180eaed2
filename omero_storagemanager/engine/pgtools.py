"""Which pg_dump and pg_restore back up the app database (issue 20).

pg_dump refuses a server newer than itself ("server version mismatch"), so the backup
needs a client whose major version is at least the server's. With
omero.web.storagemanager.pg_bin_dir set, that directory's programs are the only
candidates (the demo sets it to its embedded PostgreSQL's own bin/); otherwise every
installed PostgreSQL client is a candidate (PATH, Debian's /usr/lib/postgresql/*/bin,
the PGDG /usr/pgsql-*/bin, /usr/local/pgsql/bin) and the newest one not older than the
server is taken. None fits: BackupError naming both versions, raised when a backup
schedule is set (configuration time) as well as by the job.
"""
import glob
import os
import re
import shutil
import subprocess

from .. import settings

SEARCHED = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class BackupError(RuntimeError):
    pass


def server_major(connection):
    """The major version of the server behind a Django connection (18 for 18.1)."""
    with connection.cursor() as cur:
        cur.execute("SHOW server_version_num")
        number = int(cur.fetchone()[0])
    return number // 10000 if number >= 100000 else number // 100  # 9.6 -> 906 // 100


def client_major(program):
    """The major version `program --version` reports, or None when it does not run."""
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _VERSION.search(out)
    return int(found.group(1)) if found else None


def candidates(name):
    """Paths of the installed `name` programs to choose from, configured ones only when
    pg_bin_dir is set."""
    if settings.PG_BIN_DIR:
        return [os.path.join(settings.PG_BIN_DIR, name)]
    found = []
    on_path = shutil.which(name)
    if on_path:
        found.append(on_path)
    for pattern in SEARCHED:
        found.extend(sorted(glob.glob(os.path.join(pattern, name))))
    unique = []
    for path in found:
        real = os.path.realpath(path)
        if os.access(path, os.X_OK) and real not in {os.path.realpath(p) for p in unique}:
            unique.append(path)
    return unique


def find_program(name, connection):
    """(path, client major, server major) of the newest `name` not older than the server,
    or BackupError saying what was found and what the server is."""
    server = server_major(connection)
    versions = [(client_major(path), path) for path in candidates(name)]
    fitting = [(major, path) for major, path in versions if major is not None and major >= server]
    if fitting:
        major, path = max(fitting, key=lambda item: item[0])
        return path, major, server
    where = (f"in pg_bin_dir {settings.PG_BIN_DIR}" if settings.PG_BIN_DIR
             else "on this machine")
    seen = ", ".join(f"{path} is PostgreSQL {major}" for major, path in versions
                     if major is not None)
    if not seen:
        raise BackupError(f"no {name} {where}, and the app database is PostgreSQL {server}: "
                          f"install the PostgreSQL {server} client or set "
                          "omero.web.storagemanager.pg_bin_dir")
    raise BackupError(f"the app database is PostgreSQL {server} but {seen}: {name} must be "
                      f"version {server} or newer; install the PostgreSQL {server} client or "
                      "set omero.web.storagemanager.pg_bin_dir to its bin/ directory")

"""Backups of the app's own database (manual chapter 11): a rotating set of dumps.

    <var_dir>/backups/current.dump, 0.dump, 1.dump, ... (kept: settings.BACKUPS_KEPT)

A new dump is written under a temporary name and renamed once pg_dump succeeded, then
the older ones shift by one. Dumps are 0600 in a 0700 folder; pg_dump and pg_restore
are the installed ones that fit the server (pgtools.py). The password goes to pg_dump through the environment,
never on its command line (visible to every user of the machine) or in a log.
"""
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone

from django.db import connection

from .. import settings
from ..private_files import private_dir, private_file
from .pgtools import BackupError, find_program  # noqa: F401 (BackupError: callers' name)




@dataclass
class Backup:
    name: str
    path: str
    bytes: int
    created: datetime


def backup_dir():
    return os.path.join(settings.var_dir(), "backups")


def _program(name):
    """The installed `name` that fits the app database's server (pgtools.py)."""
    return find_program(name, connection)[0]


def _connection_args():
    db = connection.settings_dict
    args = ["--dbname", db["NAME"], "--username", db.get("USER") or "postgres"]
    if db.get("HOST"):
        args += ["--host", db["HOST"]]
    if db.get("PORT"):
        args += ["--port", str(db["PORT"])]
    env = dict(os.environ, PGPASSWORD=db.get("PASSWORD") or "", PGCONNECT_TIMEOUT="10")
    return args, env


def _run(argv, env):
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BackupError(f"{os.path.basename(argv[0])} failed: "
                          + (proc.stderr.strip().splitlines() or ["no message"])[-1])


def list_backups():
    folder = backup_dir()
    found = []
    names = ["current"] + [str(i) for i in range(settings.BACKUPS_KEPT)]
    for name in names:
        path = os.path.join(folder, name + ".dump")
        if os.path.exists(path):
            st = os.stat(path)
            found.append(Backup(name, path, st.st_size,
                                datetime.fromtimestamp(st.st_mtime, timezone.utc)))
    return found


def run_backup():
    """Dump the app database; rotate current -> 0 -> 1 ...; returns the new Backup."""
    folder = backup_dir()
    private_dir(folder)
    program = _program("pg_dump")
    tmp = private_file(os.path.join(folder, ".current.dump.tmp"))  # pg_dump keeps 0600
    args, env = _connection_args()
    _run([program, "--format=custom", "--no-owner", "--file", tmp, *args], env)
    os.chmod(tmp, 0o600)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    kept = settings.BACKUPS_KEPT
    oldest = os.path.join(folder, f"{kept - 1}.dump")
    if os.path.exists(oldest):
        os.unlink(oldest)
    for i in range(kept - 2, -1, -1):
        src = os.path.join(folder, f"{i}.dump")
        if os.path.exists(src):
            os.rename(src, os.path.join(folder, f"{i + 1}.dump"))
    current = os.path.join(folder, "current.dump")
    if os.path.exists(current):
        os.rename(current, os.path.join(folder, "0.dump"))
    os.rename(tmp, current)
    return list_backups()[0]


def restore_backup(name="current"):
    """Replace the app database's contents by a backup (current, 0, 1, ...)."""
    name = str(name)
    if name != "current" and not name.isdigit():  # never a path: "../x" must not reach
        raise BackupError(f"no backup {name!r}: backups are named current, 0, 1, ...")
    path = os.path.join(backup_dir(), f"{name}.dump")
    if not os.path.exists(path):
        raise BackupError(f"no backup {name!r} in {backup_dir()}")
    args, env = _connection_args()
    connection.close()  # our own session must not hold locks on what is replaced
    _run([_program("pg_restore"), "--clean", "--if-exists", "--no-owner",
          "--single-transaction", *args, path], env)
    return path

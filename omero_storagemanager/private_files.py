"""Files the app writes for itself (job logs, database backups): readable by the service
user only, whatever the process's umask. Job logs hold paths and checksums, backups the
whole app database."""
import os

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path):
    """Make the folder (and missing parents) 0700; an existing one is set to 0700."""
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path):
    """Create the file 0600 if missing (an existing one is set to 0600); for writers
    that open it by name afterwards, such as pg_dump."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def open_private(path, mode="a"):
    """open(path, mode) for text, the file created 0600 (an existing one set to 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, mode, encoding="utf-8")

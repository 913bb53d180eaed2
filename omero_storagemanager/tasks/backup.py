"""The backup job: one dump of the app database into the rotating set."""
from ..engine.backup import run_backup


def backup_job(job, handle):
    backup = run_backup()
    handle.log(f"backup {backup.path}: {backup.bytes} bytes")
    return {"path": backup.path, "bytes": backup.bytes}

"""What a running job hands the engine: progress, a log folder, a heartbeat, cancel.

The log folder (manual chapter 10) holds job.log (what happened), files.txt (the files
handled) and errors.txt. Progress and heartbeat are written to the Job row at most
every PROGRESS_INTERVAL seconds, from the job's own thread; a heartbeat thread keeps
the heartbeat fresh while the engine is busy in one long step.
"""
import os
import threading
import time
from datetime import datetime, timezone

from django.db import close_old_connections, connection

from .. import settings
from ..models import Job
from ..private_files import open_private, private_dir

PROGRESS_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 5.0


class JobCancelled(Exception):
    pass


def log_dir_for(job):
    return os.path.join(settings.var_dir(), "jobs", str(job.pk))


class JobHandle:
    def __init__(self, job, clock=time.monotonic):
        self.job = job
        self.clock = clock
        self.dir = job.log_dir or log_dir_for(job)
        private_dir(os.path.dirname(self.dir))  # jobs/: 0700 as well
        private_dir(self.dir)
        self._log = open_private(os.path.join(self.dir, "job.log"))
        self._last = 0.0
        self._stop = threading.Event()
        self._lost = threading.Event()  # another worker took the job over
        self._beat = None

    # -- log --------------------------------------------------------------------------
    def log(self, message):
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        self._log.write(f"{stamp} {message}\n")
        self._log.flush()

    def error(self, message):
        self.log("ERROR " + message)
        with open_private(os.path.join(self.dir, "errors.txt")) as f:
            f.write(message + "\n")

    def files(self, lines):
        with open_private(os.path.join(self.dir, "files.txt")) as f:
            f.writelines(line + "\n" for line in lines)

    # -- progress (the engine's progress protocol) --------------------------------------
    # Jobs whose engine counts files in start(total); a scan counts collections there.
    FILE_COUNTED = ("archive", "purge", "restore")

    def start(self, total):
        self.check_cancel()
        if self.job.kind in self.FILE_COUNTED:
            # Several collections in one job: the total grows as each one starts.
            self.job.files_total += total
            self.save_progress()

    def advance(self, items=1, files=0, nbytes=0):
        self.job.files_done += files
        self.job.bytes_done += nbytes
        now = self.clock()
        if now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            self.save_progress()
            self.check_cancel()

    def done(self):
        self.save_progress()

    def set_totals(self, files, nbytes):
        self.job.files_total, self.job.bytes_total = files, nbytes
        self.save_progress()

    def save_progress(self):
        Job.objects.filter(pk=self.job.pk, worker=self.job.worker).update(
            files_done=self.job.files_done, bytes_done=self.job.bytes_done,
            files_total=self.job.files_total, bytes_total=self.job.bytes_total,
            heartbeat=datetime.now(timezone.utc))

    def check_cancel(self):
        if self._lost.is_set():
            raise JobCancelled(f"job {self.job.pk} was taken over by another worker")
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise JobCancelled(f"job {self.job.pk} cancelled")

    # -- heartbeat --------------------------------------------------------------------
    def __enter__(self):
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name=f"heartbeat-job-{self.job.pk}")
        self._beat.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._beat:
            self._beat.join()
        self._log.close()

    def _heartbeat(self):
        try:
            while not self._stop.wait(HEARTBEAT_INTERVAL):
                beating = Job.objects.filter(pk=self.job.pk, state=Job.RUNNING,
                                             worker=self.job.worker).update(
                    heartbeat=datetime.now(timezone.utc))
                if not beating:
                    self._lost.set()
                    return
        finally:
            connection.close()  # this thread's own database connection
            close_old_connections()

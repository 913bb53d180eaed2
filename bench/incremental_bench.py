"""Benchmark of the incremental catalogue (issue 24): a refresh after 1,000 new files and
100 link changes, against a full catalogue refresh of the same facility in the same run.

What is timed, in this process (Django set up once, the real omeroweb.settings):
  - baseline: refresh_catalog(force_full=True), a full catalog scan of every collection
    with its figures stored (the same work as bench.scan_bench's catalog mode);
  - incremental: refresh_catalog() after the changes of one round, made beforehand and
    not timed: --files new original files in imports of 1 to 4 files (one image each,
    linked into random datasets) and --links new links (dataset-image and
    project-dataset), each an OMERO-like transaction with its eventlog rows
    (testbed.changes). Unlinks are not among them: OMERO logs no row for a graph
    delete, so any delete makes the refresh a full scan (docs/eventlog.md).
Each figure is the median of --runs rounds, alternating baseline and incremental; the
load average is recorded with each, and the CPU seconds of this process and of the
database server (which other sessions' load does not inflate). Results go to
docs/performance.md between <!-- incremental-bench:start --> and
<!-- incremental-bench:end --> (another --files: incremental-bench-N).

    .venv/bin/python -m bench.facility --files 1000000 --filesets 100000 \\
        --projects 10000 --screens 500 --disk none --workdir /tmp/sm-bench-scale
    .venv/bin/python -m bench.incremental_bench --files 1000000 --filesets 100000 \\
        --projects 10000 --screens 500 --workdir /tmp/sm-bench-scale
"""
import argparse
import datetime as dt
import os
import random
import resource
import sys
from pathlib import Path

from bench.common import (REPO_ROOT, Dataset, Params, django_setup, log, machine_info,
                          median, migrate, opened, timed)

DOC = REPO_ROOT / "docs" / "performance.md"
START, END = "<!-- incremental-bench:start -->", "<!-- incremental-bench:end -->"
GOAL_RATIO = 0.05


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--filesets", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--screens", type=int, default=500)
    parser.add_argument("--disk", choices=["sparse", "tiny", "none"], default="none")
    parser.add_argument("--workdir", default="/tmp/sm-bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--new-files", type=int, default=1_000)
    parser.add_argument("--links", type=int, default=100)
    parser.add_argument("--datasets", type=int, default=20,
                        help="the new files go into this many random datasets (a day's "
                             "imports of a few users); 0: each import into its own")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="print where an incremental refresh's time goes (cProfile)")
    return parser.parse_args(argv)


def _random_ids(cur, table, count, rng):
    cur.execute(f"SELECT min(id), max(id) FROM {table}")
    low, high = cur.fetchone()
    found = []
    while len(found) < count:
        cur.execute(f"SELECT id FROM {table} WHERE id >= %s ORDER BY id LIMIT 1",
                    [rng.randint(low, high)])
        found.append(cur.fetchone()[0])
    return found


def _server_cpu(datadir):
    """CPU seconds the PostgreSQL server of `datadir` has used: the postmaster's own and
    its exited children's (cutime, cstime), plus every live child's. Its connections are
    this benchmark's only, so a difference is what the database spent on a refresh."""
    tick = os.sysconf("SC_CLK_TCK")
    pid = int((Path(datadir) / "postmaster.pid").read_text().split()[0])

    def fields(p):
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()

    main = fields(pid)
    total = sum(int(x) for x in main[11:15])  # utime stime cutime cstime
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += sum(int(x) for x in fields(child)[11:13])
        except FileNotFoundError:  # exited meanwhile: counted in cutime next time
            pass
    return total / tick


def _cpu_timed(datadir, fn, *args, **kwargs):
    """(wall seconds, CPU seconds of this process and of the database server, result):
    the CPU figure does not grow with other sessions' load, the wall time does."""
    before = (resource.getrusage(resource.RUSAGE_SELF), _server_cpu(datadir))
    seconds, result = timed(fn, *args, **kwargs)
    after = (resource.getrusage(resource.RUSAGE_SELF), _server_cpu(datadir))
    cpu = (after[0].ru_utime + after[0].ru_stime - before[0].ru_utime - before[0].ru_stime
           + after[1] - before[1])
    return seconds, cpu, result


def make_changes(writer, rng, new_files, links, serial, spread=0):
    """One round's changes; returns (files, links) made."""
    from testbed.changes import FacilityChanges

    changes = FacilityChanges(writer, seed=serial)
    changes.serial = serial * 100_000
    changes.clock = dt.datetime(2026, 6, 1) + dt.timedelta(days=serial)
    with writer.cursor() as cur:
        datasets = _random_ids(cur, "dataset", spread or new_files, rng)
    writer.commit()
    made = 0
    while made < new_files:
        files = min(rng.randint(1, 4), new_files - made)
        changes.import_into(datasets[made % len(datasets)], files)
        made += files
    with writer.cursor() as cur:
        # Images of Projects (a dataset-image link row's image): a user links images
        # into another dataset; a plate's images are not linked into datasets.
        cur.execute("SELECT child FROM datasetimagelink WHERE id = ANY(%s)",
                    [_random_ids(cur, "datasetimagelink", links, rng)])
        images = [r[0] for r in cur.fetchall()]
        while len(images) < links:  # ANY() gives each image once
            images += images
        images = images[:links]
        targets = _random_ids(cur, "dataset", links, rng)
        projects = _random_ids(cur, "project", links, rng)
        cur.execute("SELECT parent, child FROM datasetimagelink WHERE child = ANY(%s)"
                    " UNION SELECT parent, child FROM projectdatasetlink WHERE child = ANY(%s)",
                    [images, targets])
        existing = set(cur.fetchall())
    writer.commit()
    done = 0
    for n in range(links):
        if n % 2 == 0 and (targets[n], images[n]) not in existing:
            changes.link("datasetimagelink", targets[n], images[n])
            done += 1
        elif n % 2 == 1 and (projects[n], targets[n]) not in existing:
            changes.link("projectdatasetlink", projects[n], targets[n])
            done += 1
    return made, done


def run(args):
    import psycopg2

    params = Params(args.files, args.filesets, args.projects, args.screens, args.disk)
    rng = random.Random()  # a cached facility keeps earlier runs' changes: pick anew
    with opened(Dataset(args.workdir, params)) as dataset:
        dataset.fresh_app_db()
        django_setup()
        migrate()
        # Only now: the app's models need Django set up.
        from omero_storagemanager.catalog import connect
        from omero_storagemanager.engine.incremental import FULL, INCREMENTAL, refresh_catalog

        machine = machine_info(dataset.server)
        omero = dataset.omero_params()
        conn = connect(omero)
        writer = psycopg2.connect(**omero)
        rounds = []
        try:
            log("first catalogue (untimed): creates the collections")
            refresh_catalog(conn, connect=lambda: connect(omero))
            for n in range(args.runs):
                load_full = os.getloadavg()[0]
                datadir = dataset.pg_dir / "data"
                full_s, full_cpu, full = _cpu_timed(datadir, refresh_catalog, conn,
                                                    connect=lambda: connect(omero),
                                                    force_full=True)
                assert full.mode == FULL
                files, links = make_changes(writer, rng, args.new_files, args.links, n + 1,
                                            args.datasets)
                load_inc = os.getloadavg()[0]
                if args.profile:
                    import cProfile
                    import pstats

                    profiler = cProfile.Profile()
                    profiler.enable()
                inc_s, inc_cpu, inc = _cpu_timed(datadir, refresh_catalog, conn,
                                                 connect=lambda: connect(omero))
                if args.profile:
                    profiler.disable()
                    pstats.Stats(profiler, stream=sys.stderr).sort_stats(
                        "cumulative").print_stats(25)
                if inc.mode != INCREMENTAL:
                    raise SystemExit(f"the refresh fell back to a full scan: {inc.reason}")
                log(f"round {n + 1}: full {full_s:.3f} s, {full_cpu:.2f} CPU-s (load "
                    f"{load_full:.2f}), incremental {inc_s:.3f} s, {inc_cpu:.2f} CPU-s (load "
                    f"{load_inc:.2f}): {inc.events} eventlog "
                    f"rows, {inc.collections} collections, after {files} files {links} links")
                rounds.append({"full_s": full_s, "inc_s": inc_s, "full_cpu": full_cpu,
                               "inc_cpu": inc_cpu, "load_full": load_full,
                               "load_inc": load_inc, "events": inc.events,
                               "collections": inc.collections, "total": full.collections,
                               "files": files, "links": links})
        finally:
            writer.close()
            conn.close()
        return {"machine": machine, "summary": dataset.summary, "rounds": rounds}


def report(result, args):
    rounds = result["rounds"]
    full, inc = median([r["full_s"] for r in rounds]), median([r["inc_s"] for r in rounds])
    full_cpu = median([r["full_cpu"] for r in rounds])
    inc_cpu = median([r["inc_cpu"] for r in rounds])
    m, s = result["machine"], result["summary"]
    ratio = inc / full
    lines = [
        START,
        f"**Incremental catalogue** ({dt.date.today():%Y-%m-%d}, `bench.incremental_bench`, "
        f"{len(rounds)} rounds): {s['originalfiles']:,} original files, "
        f"{rounds[0]['total']:,} collections; CPU {m['cpu']} ({m['nproc']} cores), "
        f"PostgreSQL {m['postgres']}. **The machine was shared and loaded** (other "
        "sessions' tests and a long reliability test): the load average (1 min) is given "
        "with each round.",
        "",
        "| round | full refresh (baseline) | CPU | load | incremental | CPU | load "
        "| eventlog rows | collections refreshed | changes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(rounds, 1):
        lines.append(f"| {n} | {r['full_s']:.3f} s | {r['full_cpu']:.2f} s | "
                     f"{r['load_full']:.1f} | {r['inc_s']:.3f} s | {r['inc_cpu']:.2f} s | "
                     f"{r['load_inc']:.1f} | {r['events']:,} | "
                     f"{r['collections']} | {r['files']} files, {r['links']} links |")
    lines += [
        "",
        f"| figure | value | goal | met |",
        "|---|---|---|---|",
        f"| median full refresh | {full:.3f} s | | |",
        f"| median incremental refresh | {inc:.3f} s | | |",
        f"| changes per round | {args.new_files} new files in imports of 1-4 files into "
        + (f"{args.datasets} random datasets" if args.datasets else "one random dataset each")
        + f", {args.links} new links (dataset-image, project-dataset) | | |",
        f"| incremental / full | {ratio:.1%} | < {GOAL_RATIO:.0%} | "
        f"{'yes' if ratio < GOAL_RATIO else 'no'} |",
        f"| CPU: incremental / full (this process and the database server; medians "
        f"{inc_cpu:.2f} and {full_cpu:.2f} CPU-s) | {inc_cpu / full_cpu:.1%} | | |",
        END,
    ]
    return "\n".join(lines)


def markers(files):
    """The doc's markers for a facility of `files` files: the default size keeps the
    plain ones, each other size its own (several sizes side by side)."""
    if files == 1_000_000:
        return START, END
    return f"<!-- incremental-bench-{files}:start -->", f"<!-- incremental-bench-{files}:end -->"


def write_doc(block, files=1_000_000):
    start, end = markers(files)
    block = block.replace(START, start).replace(END, end)
    text = DOC.read_text(encoding="utf-8")
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    elif END in text:  # beside the 1M block (the file's end is scan_bench's to rewrite)
        head, rest = text.split(END, 1)
        text = head + END + "\n\n" + block + rest
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")


def main(argv=None):
    args = parse_args(argv)
    result = run(args)
    block = report(result, args)
    print(block)
    if not args.no_doc:
        write_doc(block, args.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What purge's reality checks cost (issue 19, "Cost"), against baselines measured in
the same run, on the archive benchmark's two collections (bench/archive_bench.py: the
1.5 GB mix and 20,000 small files, generated once and cached in --workdir).

Per run and collection, each step in a fresh process, the page cache dropped first
(untimed) unless --no-drop-caches:

  purge    engine.purge.purge_collection as shipped: the plan (inventory, stats of the
           primaries and of the copies on the location, holders), the content check
           (every copy read whole and its SHA1 compared), then per batch the holders
           read again from OMERO and per file the re-check on a directory descriptor
           before the unlinkat. The seconds inside the content check are timed apart
           (PhaseTimer on purge._check_contents).
  bare     the same files freed the way the purge frees them, without its checks:
           inventory and stats, per batch of 256 files the PurgedFile rows written
           (INTENT), the unlinks, each folder fsynced once, the rows marked PURGED; no
           copy looked at, no identity compared, no holders read again, no folder
           opened by descriptor.
  floor    bare, after one lstat of each copy the purge relies on: the least any check
           that "the copy is there now" must pay (with a cold cache, reading the
           copies' inodes from the disk), which bare never pays.
  sha1sum  `sha1sum` over the copies the purge reads (the bag's payload files), one
           process, the same cache state.
  (each purge or bare run is followed by an untimed restore of the collection, and
  one untimed bare purge and restore come first, so that every timed step starts
  from primaries a restore wrote.)

Figures (median over runs of ratios taken within a run):
  metadata ratio  (purge - its content check) / bare: what the stats, identity and
                  holder checks and the re-check before each unlink add (goal < 1.10);
  floor ratio     floor / bare: what looking at the copies alone costs (the physical
                  floor of the metadata ratio on this disk);
  content ratio   content check / sha1sum (goal <= 1.1).

    .venv/bin/python -m bench.purge_bench                       # 3 runs, both sets
    .venv/bin/python -m bench.purge_bench --sets mix            # the goals' collection
    .venv/bin/python -m bench.purge_bench --runs 1 --large 1 --medium 20 --small 200 \\
        --small-files 2000                                      # a quick check

Results are printed and written into docs/performance.md between
`<!-- purge-bench:start -->` and `<!-- purge-bench:end -->`.
"""
import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench import archive_bench
from bench.archive_bench import Datasets, Params, run_child
from bench.common import (PhaseTimer, can_drop_caches, drop_caches, log, machine_info,
                          median)

START, END = "<!-- purge-bench:start -->", "<!-- purge-bench:end -->"
GOALS = {"metadata_ratio": 1.10, "content_ratio": 1.1}


# -- the child side (run by archive_bench.run_child with role purge-bench-*) -------------

def _bare_purge(conn, paths, collection):
    """The same files freed as purge frees them (rows, unlinks, folder fsyncs in
    batches of purge.BATCH) without any of its checks."""
    from omero_storagemanager.catalog.inventory import InventoryReader
    from omero_storagemanager.engine.copyfile import fsync_dirs
    from omero_storagemanager.engine.disk import stat_inventory
    from omero_storagemanager.engine.purge import BATCH
    from omero_storagemanager.models import CopyFile, PurgedFile

    inventory = InventoryReader(conn, paths).read(collection.kind, collection.omero_id)
    stat_inventory(inventory, paths)
    rows = {r.relpath: r for r in CopyFile.objects.filter(
        relpath__in=[paths.relative(f.path) for f in inventory.files])}
    todo = [(r, rows[paths.relative(r.path)]) for r in inventory.files
            if r.exists and paths.relative(r.path) in rows]
    for start in range(0, len(todo), BATCH):
        batch = todo[start:start + BATCH]
        made = PurgedFile.objects.bulk_create([PurgedFile(
            collection=collection, path=record.path, relpath=copy_file.relpath,
            size=record.disk_size, sha1=copy_file.checksum, mode=copy_file.mode,
            copy_file=copy_file, state=PurgedFile.INTENT) for record, copy_file in batch])
        for record, _ in batch:
            os.unlink(record.path)
        fsync_dirs(os.path.dirname(record.path) for record, _ in batch)
        PurgedFile.objects.filter(pk__in=[row.pk for row in made]).update(
            state=PurgedFile.PURGED)
    return len(todo)


def child_main(role, spec):
    import django

    django.setup()
    from omero_storagemanager.engine import purge
    from omero_storagemanager.engine.restore import restore_collection
    from omero_storagemanager.models import Collection, Copy, Location
    from omero_storagemanager.verbs.common import open_catalog, repository_paths

    conn, paths = open_catalog(), repository_paths()
    collection = Collection.objects.get(kind=Collection.PROJECT)
    if role == "copies":  # the payload files of the copies, for sha1sum
        location = Location.objects.get(current=True)
        root = Path(location.mount) / str(location.pk) / "write"
        files = [str(p) for copy in Copy.objects.filter(collection=collection)
                 for p in (root / copy.bag_path / "data").rglob("*") if p.is_file()]
        Path(spec["list"]).write_text("\0".join(files))
        print(json.dumps({"files": len(files)}))
        return 0
    if role == "restore":
        result = restore_collection(collection, None, log=lambda _: None)
        print(json.dumps({"restored": result.restored}))
        return 0
    timer = PhaseTimer()
    timer.wrap(purge, "_check_contents", "content")
    if spec.get("drop"):
        drop_caches()
    # SM_BENCH_PROFILE=<folder>: each timed step also writes a cProfile file there, to
    # see where a ratio's time goes (the profiler slows the step: not for the figures).
    profile_dir = os.environ.get("SM_BENCH_PROFILE")
    profiler = None
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    if role == "purge":
        plan = purge.purge_collection(conn, paths, collection, None, log=lambda _: None)
        freed, kept = len(plan.freed), len(plan.blocked)
    elif role == "bare":
        freed, kept = _bare_purge(conn, paths, collection), 0
    elif role == "floor":
        for copy in Path(spec["list"]).read_text().split("\0"):
            os.lstat(copy)
        freed, kept = _bare_purge(conn, paths, collection), 0
    else:
        raise SystemExit(f"unknown role {role}")
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.path.join(profile_dir, f"{role}-{os.getpid()}.prof"))
    print(json.dumps({"seconds": seconds, "freed": freed, "kept": kept,
                      "content": timer.seconds.get("content", 0.0)}))
    return 0


# -- the parent side -----------------------------------------------------------------

def _sha1sum(list_file, drop):
    if drop:
        drop_caches()
    started = time.perf_counter()
    subprocess.run(["xargs", "-0", "-a", str(list_file), "sha1sum"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(datasets, args, drop):
    runs = []
    for which in args.sets:
        mount = datasets.run_dir / f"{which}-location"
        mount.mkdir()
        run_child(datasets, which, "archive", {"mount": str(mount), "workers": args.workers})
        list_file = datasets.run_dir / f"{which}.copies"
        run_child(datasets, which, "purge-bench-copies", {"list": str(list_file)})
        # Untimed: every timed step then starts from primaries a restore wrote (the
        # archive leaves them in the page cache, which makes unlinking them dearer).
        run_child(datasets, which, "purge-bench-bare", {})
        run_child(datasets, which, "purge-bench-restore")
        for run in range(args.runs):
            one = {}
            order = ("purge", "bare", "floor") if run % 2 == 0 else ("floor", "bare", "purge")
            for method in order:
                one[method] = run_child(datasets, which, f"purge-bench-{method}",
                                        {"drop": drop, "list": str(list_file)})
                run_child(datasets, which, "purge-bench-restore")
            one["sha1sum"] = {"seconds": _sha1sum(list_file, drop)}
            if one["purge"]["kept"] or one["purge"]["freed"] != one["bare"]["freed"]:
                raise SystemExit(f"{which}: purge freed {one['purge']['freed']} and kept "
                                 f"{one['purge']['kept']}, bare freed {one['bare']['freed']}")
            log(f"{which} run {run + 1}: purge {one['purge']['seconds']:.2f} s (content "
                f"{one['purge']['content']:.2f} s), bare {one['bare']['seconds']:.2f} s, "
                f"floor {one['floor']['seconds']:.2f} s, sha1sum {one['sha1sum']['seconds']:.2f} s")
            runs.append({"set": which, **one})
    return runs


def summarize(runs):
    out = {}
    for which in archive_bench.SETS:
        mine = [r for r in runs if r["set"] == which]
        if not mine:
            continue
        out[which] = {
            "purge_s": median([r["purge"]["seconds"] for r in mine]),
            "content_s": median([r["purge"]["content"] for r in mine]),
            "bare_s": median([r["bare"]["seconds"] for r in mine]),
            "sha1sum_s": median([r["sha1sum"]["seconds"] for r in mine]),
            "floor_s": median([r["floor"]["seconds"] for r in mine]),
            "floor_ratio": median([r["floor"]["seconds"] / r["bare"]["seconds"] for r in mine]),
            "metadata_ratio": median([(r["purge"]["seconds"] - r["purge"]["content"])
                                      / r["bare"]["seconds"] for r in mine]),
            "content_ratio": median([r["purge"]["content"] / r["sha1sum"]["seconds"]
                                     for r in mine]),
            "files": mine[0]["purge"]["freed"],
        }
    return out


def render(summary, machine, drop, runs, when, command):
    lines = [f"### Purge: the cost of deciding from reality ({when:%Y-%m-%d})", "",
             f"`{command}`: {runs} runs per set, median of the ratios within a run; "
             + ("page cache dropped before each timed step." if drop else
                "warm page cache."),
             f"Machine: {machine['cpu']}, {machine['nproc']} cores, "
             f"{machine['ram_gib']} GiB, load at start {machine['loadavg']}.", "",
             "| set | files | purge s | of which content check s | bare purge s | "
             "floor s (bare + a look at each copy) | sha1sum of the copies s | "
             "metadata ratio (goal < 1.10) | floor ratio | content ratio (goal <= 1.1) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for which, s in summary.items():
        lines.append(
            f"| {which} | {s['files']:,} | {s['purge_s']:.2f} | {s['content_s']:.2f} | "
            f"{s['bare_s']:.2f} | {s['floor_s']:.2f} | {s['sha1sum_s']:.2f} | "
            f"{s['metadata_ratio']:.2f} "
            f"{'met' if s['metadata_ratio'] < GOALS['metadata_ratio'] else '**not met**'} | "
            f"{s['floor_ratio']:.2f} | "
            f"{s['content_ratio']:.2f} "
            f"{'met' if s['content_ratio'] <= GOALS['content_ratio'] else '**not met**'} |")
    return "\n".join(lines) + "\n"


def update_doc(block):
    doc = archive_bench.DOC
    text = doc.read_text()
    section = f"{START}\n{block.rstrip()}\n{END}"
    if START in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        at = text.find(archive_bench.START)
        text = text[:at] + section + "\n\n" + text[at:] if at >= 0 else \
            text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Params()
    for name in ("large", "large_mib", "medium", "medium_mib", "small", "small_kib",
                 "small_files"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sets", nargs="+", choices=archive_bench.SETS,
                        default=list(archive_bench.SETS),
                        help="which collections (the issue's goals are on the mix)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--workdir", default="/tmp/sm-archive-bench")
    parser.add_argument("--no-drop-caches", action="store_true")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    params = Params(args.large, args.large_mib, args.medium, args.medium_mib, args.small,
                    args.small_kib, args.small_files)
    datasets = Datasets(args.workdir, params)
    drop = False
    if not args.no_drop_caches:
        drop, why = can_drop_caches()
        if not drop:
            log(f"CANNOT DROP CACHES ({why}): measuring with a warm cache")
    try:
        datasets.open()
        datasets.fresh_app_dbs()
        for which in args.sets:
            run_child(datasets, which, "migrate")
        machine = machine_info(datasets.server)
        runs = measure(datasets, args, drop)
    finally:
        datasets.close()
    summary = summarize(runs)
    command = ".venv/bin/python -m bench.purge_bench " + " ".join(argv or sys.argv[1:])
    block = render(summary, machine, drop, args.runs, dt.datetime.now(dt.timezone.utc),
                   command.strip())
    print(block)
    print(json.dumps({"summary": summary, "machine": machine, "params": asdict(params)}))
    if not args.no_doc:
        update_doc(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())

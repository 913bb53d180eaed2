"""Model-based test of a changing world, long form (issue 19).

The Hypothesis state machine of tests/worldmodel_support.py (archive, purge single and
joint, restore, scan, dry run, audit and rescan on random collections of a tiny
facility, while Datasets/Plates are linked and unlinked, primary files re-imported,
rewritten, truncated and hard-linked, folders replaced by symlinks, bag files deleted or
damaged, a location or the repository taken away, a step killed with SIGKILL), run
over many seeds. After every step it checks the four invariants of issue 19 and that
the engine raised only the app's own errors; see that module's docstring.

Each seed is a Hypothesis run of `examples` examples of up to `--example-steps` steps;
a seed that breaks an invariant stops there, shrinks to a minimal program (unless
--no-shrink) and is recorded as a violation with that program; the next seed goes on.

Full run (writes docs/reliability/world-model.json and re-renders docs/reliability.md):
    .venv/bin/python -m tests.reliability.world_model --steps 20000 --seeds 50
"""
import argparse
import math
import re
import shutil
import tempfile
import time
from pathlib import Path

PART = "world-model"
ORDER = 5
TITLE = "Model-based test: a changing world"
DEFAULT_STEPS = 20_000
DEFAULT_SEEDS = 50
EXAMPLE_STEPS = 50
INVARIANTS = {
    "1": "1. every referenced byte on primary storage or in a bag file",
    "2": "2. nothing outside the repository and locations touched",
    "3": "3. every collection's state agrees with its files",
    "4": "4. a restore gives back bytes, sizes, modes, mtimes (ns), OMERO names/owners/annotations",
    "E": "E. only the app's own errors, one clear message",
}


def invariant_of(text):
    found = re.search(r"INVARIANT (\S+)", text)
    return found.group(1) if found else "E"


def run_part(server, steps, seeds, first_seed=1, example_steps=EXAMPLE_STEPS, shrink=True,
             kills=1, minutes=None, workdir=None, log=print, ignore=()):
    """Run `seeds` seeds, about `steps` rule steps in all. Returns (summary, env)."""
    from tests import worldmodel_support as wm

    work = Path(workdir or tempfile.mkdtemp(prefix="world-model-"))
    env = wm.Env(server, work, max_kills=kills, ignore=ignore)
    per_seed = max(1, math.ceil(steps / seeds / example_steps))
    started = time.monotonic()
    failures, ran = [], []
    try:
        for seed in range(first_seed, first_seed + seeds):
            if minutes is not None and time.monotonic() - started > minutes * 60:
                log(f"time box of {minutes} min reached: seeds from {seed} not run")
                break
            before = env.rule_steps
            t = time.monotonic()
            try:
                wm.run(env, examples=per_seed, steps=example_steps, seed=seed, shrink=shrink)
                outcome = "ok"
            except Exception as exc:  # noqa: BLE001 - a violation, or a harness error
                notes = "\n".join(getattr(exc, "__notes__", []))
                text = str(exc).strip() if isinstance(exc, AssertionError) else (
                    f"INVARIANT E (harness or engine error) {type(exc).__name__}: {exc}")
                failures.append({"seed": seed, "invariant": invariant_of(text),
                                 "message": text, "program": notes})
                outcome = f"VIOLATION of invariant {invariant_of(text)}"
            ran.append(seed)
            log(f"seed {seed}: {outcome}; {env.rule_steps - before} steps in "
                f"{time.monotonic() - t:.0f} s (total {env.rule_steps} steps, "
                f"{env.examples} examples)")
    finally:
        env.close()
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    summary = {"seeds": ran, "first_seed": first_seed, "examples_per_seed": per_seed,
               "example_steps": example_steps, "steps": env.rule_steps,
               "examples": env.examples, "actions": env.steps, "failures": failures,
               "outcomes": dict(sorted(env.outcomes.items())),
               "elapsed": time.monotonic() - started, "shrink": shrink, "kills": kills,
               "ignored": sorted(env.ignore),
               "counted": dict(sorted(env.violations.items()))}
    return summary, env


def _one_line(text, width=600):
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width] + " ..."


def result_for(summary, command):
    failures = summary["failures"]
    by_invariant = {k: [f for f in failures if f["invariant"] == k] for k in INVARIANTS}
    rows = [[label, len(by_invariant[k]),
             ", ".join(str(f["seed"]) for f in by_invariant[k]) or "-"]
            for k, label in INVARIANTS.items()]
    refused = {k: v for k, v in summary["outcomes"].items() if k != "ok"}
    intro = (
        "A Hypothesis state machine drives the real engine (archive, purge of one "
        "collection and joint purges of several with along_with as a purge job runs "
        "them, restore, scan, dry run, location audit and rescan) on a tiny facility "
        "(four Projects, three Screens, a fileset shared by two Projects, a Plate in two "
        "Screens, orphan Images, Datasets and Plates, an OMERO 4 image, an in-place "
        "import, attachments) in the real OMERO-shaped PostgreSQL database, with real "
        "files, an HDD location and a symlink location; between and during steps the "
        "world changes: links added and removed, an Image's links deleted, a fileset "
        "deleted outright (its Images, rows and files, as OMERO deletes them), primary files "
        "re-imported, rewritten in place (also keeping their mtime), truncated or "
        "hard-linked, a folder of the repository replaced by a symlink to a folder "
        "outside, bag files deleted, flipped or truncated (only where their bytes are "
        "kept elsewhere), a location or the repository renamed away (an unmount), a "
        "purge/restore/archive killed with SIGKILL in a subprocess and run again. After "
        "every step the test checks, from its own model and the files on disk (never "
        "the app's rows): (1) every byte OMERO references is on primary storage or in a "
        "file of a complete bag; (2) nothing outside the repository and the locations "
        "was touched; (3) every collection's state agrees with its files; (4) a restore "
        "gives back identical bytes, sizes, modes, mtimes in ns and OMERO "
        "names/owners/annotations; and (E) the engine raised only the app's own errors. "
        f"{len(summary['seeds'])} seeds from {summary['first_seed']}, "
        f"{summary['examples_per_seed']} example(s) of up to {summary['example_steps']} "
        f"steps each; {summary['steps']:,} steps in all ({summary['actions']:,} engine "
        f"calls and world changes) over {summary['examples']} examples, "
        f"wall time {summary['elapsed']:.0f} s. A failing seed stops at its first "
        "violation" + (", shrunk to the minimal program shown" if summary["shrink"] else "")
        + "; shrinking replays count as steps too.")
    notes = [
        f"Engine calls that completed: {summary['outcomes'].get('ok', 0):,}; refused with "
        "one of the app's errors (allowed outcomes): "
        + (", ".join(f"{k} {v}" for k, v in refused.items()) or "none") + ".",
        "Quick form in the test suite: tests/test_world_model.py (derandomized, a few "
        "hundred steps).",
    ]
    if summary["ignored"]:
        notes.append("Run with violations of " + ", ".join(summary["ignored"]) + " counted, "
                     "not stopping a seed: " + ", ".join(
                         f"{k} {v}" for k, v in summary["counted"].items()) + ".")
    violations = [f"seed {f['seed']}, invariant {f['invariant']}: {_one_line(f['message'])}"
                  + (f" Minimal program: {_one_line(f['program'], 1200)}" if f["program"] else "")
                  for f in failures]
    return {"part": PART, "order": ORDER, "title": TITLE, "command": command,
            "intro": intro, "trials": summary["steps"],
            "lost": len(by_invariant["1"]),
            "columns": ["invariant", "seeds that broke it", "seeds"],
            "rows": rows, "violations": violations, "notes": notes}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help="rule steps in all (spread over the seeds)")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--example-steps", type=int, default=EXAMPLE_STEPS,
                        help="steps of one example (one facility from scratch)")
    parser.add_argument("--kills", type=int, default=1,
                        help="steps killed with SIGKILL per example, at most")
    parser.add_argument("--no-shrink", action="store_true",
                        help="report a violation as found, without shrinking it")
    parser.add_argument("--minutes", type=float, help="start no seed after this time")
    parser.add_argument("--ignore", default="",
                        help="violation tags counted but not stopping a seed (comma separated)")
    parser.add_argument("--no-record", action="store_true",
                        help="print only; leave docs/reliability/ as it is")
    args = parser.parse_args(argv)
    command = (f".venv/bin/python -m tests.reliability.world_model --steps {args.steps} "
               f"--seeds {args.seeds}"
               + (f" --first-seed {args.first_seed}" if args.first_seed != 1 else "")
               + (f" --example-steps {args.example_steps}"
                  if args.example_steps != EXAMPLE_STEPS else "")
               + (f" --kills {args.kills}" if args.kills != 1 else "")
               + (" --no-shrink" if args.no_shrink else "")
               + (f" --ignore {args.ignore}" if args.ignore else ""))
    from tests.reliability.report import conclude, record, with_test_bed

    def run(server):
        summary, _ = run_part(server, args.steps, args.seeds, args.first_seed,
                              args.example_steps, not args.no_shrink, args.kills,
                              args.minutes, log=lambda s: print(s, flush=True),
                              ignore=[t for t in args.ignore.split(",") if t])
        for f in summary["failures"]:
            print(f"\n=== seed {f['seed']}: invariant {f['invariant']} ===\n{f['message']}\n"
                  f"{f['program']}", flush=True)
        result = result_for(summary, command)
        if not args.no_record:
            record(result)
        return result

    return conclude(with_test_bed(run))


if __name__ == "__main__":
    import sys

    sys.exit(main())

"""Issue 19: never lose a byte in a changing world, quick form of the model-based test.

A Hypothesis state machine (tests/worldmodel_support.py) drives the real engine on a
tiny facility (real files, the OMERO-shaped PostgreSQL database, an HDD and a symlink
location) while the world changes between and during steps, and checks after every
step: every referenced byte exists on primary storage or in a bag file (1), nothing
outside the repository and locations was touched (2), every collection's state agrees
with its files (3), a restore gives back identical bytes, sizes, modes, mtimes (ns) and
OMERO names/owners/annotations (4), and the engine raises only the app's own errors (E).

Quick form: a few hundred steps (WORLD_MODEL_EXAMPLES x WORLD_MODEL_STEPS, default
12 x 25), derandomized so CI is repeatable; WORLD_MODEL_SEED=N explores another part,
WORLD_MODEL_VERBOSE=1 prints every step, WORLD_MODEL_IGNORE=tag,tag counts violations of
those tags without failing, WORLD_MODEL_NO_SHRINK=1 reports a failure unshrunk.
The long form: `python -m tests.reliability.world_model --steps 20000 --seeds 50`.
"""
import os
import random

import pytest

from tests import worldmodel_support as wm


@pytest.fixture(scope="module")
def env(pg_server, tmp_path_factory):
    e = wm.Env(pg_server, tmp_path_factory.mktemp("world"),
               max_kills=int(os.environ.get("WORLD_MODEL_KILLS", "1")),
               verbose=bool(os.environ.get("WORLD_MODEL_VERBOSE")),
               ignore=os.environ.get("WORLD_MODEL_IGNORE", "").split(",") if
               os.environ.get("WORLD_MODEL_IGNORE") else ())
    yield e
    e.close()


@pytest.fixture
def machine(env, app_db):
    """One example's state machine, for the checks of the harness itself."""
    m = wm.machine_factory(env)()
    yield m
    m.teardown()


def _expect_violation(machine, invariant, step):
    with pytest.raises(wm.Violation, match=rf"INVARIANT {invariant}") as caught:
        step()
    return str(caught.value)


# -- the harness sees what it must see (each would pass silently if the model were blind) --

def test_the_model_sees_a_referenced_file_lost(machine):
    path = machine.present_files()[0]
    os.unlink(path)  # no copy anywhere: the bytes are gone
    text = _expect_violation(machine, "1", machine.check)
    assert machine.model.relpath[path] in text and "primary is absent" in text


def test_the_model_sees_a_file_kept_only_in_a_bag(machine):
    machine.archive("Project:2", "hdd")
    assert "archived" in machine.log[-1], machine.log
    path = sorted(machine.model.collections_files()["Project:2"])[0]
    if path in machine.model.inplace:
        path = machine.present_files(machine.model.collections_files()["Project:2"])[0]
    os.unlink(path)  # the bytes are in the bag: invariant 1 holds, invariant 3 does not
    text = _expect_violation(machine, "3", machine.check)
    assert "Project:2 is archived but" in text and machine.model.relpath[path] in text


def test_the_model_sees_the_outside_touched(machine):
    (machine.world.outside / "sentinel-0.dat").write_bytes(b"changed by the app?")
    text = _expect_violation(machine, "2", machine.check)
    assert "sentinel-0.dat: changed" in text
    machine.model.outside_snapshot = machine.model.snapshot_outside()
    (machine.world.data_dir / "x").write_bytes(b"")  # inside the repository: allowed
    machine.check()


def test_the_model_sees_a_bare_mount_point_written(machine):
    machine.repository_away()
    (machine.world.data_dir / "ManagedRepository").mkdir()
    text = _expect_violation(machine, "2", machine.check)
    assert "OMERO/ManagedRepository/: created" in text


def test_world_changes_move_the_model_along(machine):
    """Re-import, links and a bag damaged where the bytes are kept: no violation."""
    machine.archive("Project:1", "hdd")
    machine.change_primary(pick=3, how="reimport")
    machine.link_dataset(project="Project:4", dataset="Dataset:2")
    machine.damage_bag(pick=1, how="flip")
    machine.symlink_folder(pick=0)
    machine.unsymlink_folder(pick=0)
    machine.location_away(where="hdd")
    machine.location_back(where="hdd")
    machine.repository_away()
    machine.repository_back()
    machine.check()
    assert len(machine.log) >= 10, machine.log


# -- the model-based test -----------------------------------------------------------------

@pytest.mark.slow
def test_no_byte_lost_in_a_changing_world(env, app_db):
    seed = os.environ.get("WORLD_MODEL_SEED")
    wm.run(env, examples=int(os.environ.get("WORLD_MODEL_EXAMPLES", "12")),
           steps=int(os.environ.get("WORLD_MODEL_STEPS", "25")),
           seed=int(seed) if seed else None, derandomize=not seed,
           shrink=not os.environ.get("WORLD_MODEL_NO_SHRINK"))
    print(f"world model: {env.rule_steps} steps ({env.steps} engine calls and world changes) "
          f"in {env.examples} examples; outcomes {env.outcomes}; counted {env.violations}")
    assert env.rule_steps > 0


def test_a_step_killed_mid_way_is_run_again(machine):
    machine.archive("Screen:3", "hdd")
    machine.kill_mid_step(op="purge", key="Screen:3", at=3)
    assert "SIGKILL at file operation 2 (before it): killed SIGKILL before" in "\n".join(
        machine.log), machine.log
    assert "purge Screen:3 ->" in machine.log[-1], machine.log


# -- the findings of issue 19 as fixed scenarios (each broke an invariant before the fix) ----

def _file_of(machine, key, hashed=False):
    """A file in the managed repository that only `key` holds (hashed: one whose SHA-1
    OMERO recorded, a fileset entry, not an import log)."""
    m = machine.model
    return sorted(p for p in m.collections_files()[key] if p not in m.inplace
                  and "ManagedRepository" in p and m.holders[p] == {key}
                  and not (hashed and p.endswith(".log")))[0]


def _rewrite(machine, path, how):
    import random

    machine.world_rule("primary file", lambda: machine.change_file(path, how, random.Random(7)))


def _symlink_folder_of(machine, path):
    m, w = machine.model, machine.world
    folder = os.path.dirname(path)

    def action():
        target = w.outside / "moved-by-hand"
        os.rename(folder, target)
        os.symlink(target, folder)
        m.symlinked[folder] = str(target)
        return f"{os.path.relpath(folder, w.data_dir)} replaced by a symlink"
    machine.world_rule("symlinked folder", action)


def _link_index(machine, table, parent, child):
    """The `pick` of the unlink rule that removes this link."""
    with machine.world.db.cursor() as cur:
        links = []
        for name in ("projectdatasetlink", "screenplatelink", "datasetimagelink"):
            cur.execute(f"SELECT parent, child FROM {name} ORDER BY id")
            links += [(name, p, c) for p, c in cur.fetchall()]
    return links.index((table, parent, child))


def _delete_bag_file_of(machine, path):
    rel = machine.model.relpath[path]
    machine.world_rule("bag file", lambda: machine.damage_bag_file({rel}, __import__(
        "random").Random(1), "delete"))


SCENARIOS = {
    "joint purge of two Screens sharing a Plate, then restore of one (finding 1)": lambda m: (
        m.archive("Screen:1", "hdd"), m.archive("Screen:2", "hdd"),
        m.joint_purge(["Screen:1", "Screen:2"]), m.restore("Screen:2"), m.restore("Screen:1")),
    "joint purge of two Projects sharing a fileset (finding 1)": lambda m: (
        m.archive("Project:1", "hdd"), m.archive("Project:2", "link"),
        m.joint_purge(["Project:2", "Project:1"]), m.restore("Project:1")),
    "a bag file deleted after the archive, then purge (finding 2)": lambda m: (
        m.archive("Project:2", "hdd"), _delete_bag_file_of(m, _file_of(m, "Project:2")),
        m.purge("Project:2"), m.restore("Project:2")),
    "a bag file damaged during the purge (finding 2)": lambda m: (
        m.archive("Screen:3", "link"),
        m.purge_with_race("Screen:3", "damage bag", 2)),
    "a folder replaced by a symlink, then purge and restore (finding 3)": lambda m: (
        m.archive("Project:2", "hdd"), _symlink_folder_of(m, _file_of(m, "Project:2")),
        m.purge("Project:2"), m.restore("Project:2")),
    "a folder replaced by a symlink after the purge, then restore (finding 3)": lambda m: (
        m.archive("Screen:3", "hdd"), m.purge("Screen:3"),
        _symlink_folder_of(m, _file_of(m, "Screen:3")), m.restore("Screen:3")),
    "a file re-imported after the archive (finding 4)": lambda m: (
        m.archive("Project:2", "hdd"),
        _rewrite(m, _file_of(m, "Project:2", hashed=True), "reimport"),
        m.purge("Project:2")),
    "a file rewritten in place keeping its mtime (finding 4)": lambda m: (
        m.archive("Project:2", "link"),
        _rewrite(m, _file_of(m, "Project:2", hashed=True), "rewrite keeping mtime"),
        m.purge("Project:2")),
    "a file rewritten between the plan and the unlink (finding 4)": lambda m: (
        m.archive("Screen:3", "hdd"),
        m.purge_with_race("Screen:3", "rewrite keeping mtime", 5)),
    "an Image of the fileset in no Dataset (finding 5)": lambda m: (
        m.archive("Project:1", "hdd"), m.purge("Project:1")),
    "an Image of a shared fileset taken out of its Dataset, then purge (finding 5)": lambda m: (
        m.archive("Project:1", "hdd"), m.delete_image_links(pick=2),  # Image:3, s.lif [S2]
        m.purge("Project:1")),
    "restore of a never-archived Project (finding 6)": lambda m: (m.restore("Project:1"),),
    "purge of an empty Project (finding 6)": lambda m: (
        m.archive("Project:4", "hdd"), m.purge("Project:4")),
    "restored mtimes exact to the nanosecond (finding 6)": lambda m: (
        m.archive("Screen:3", "hdd"), m.purge("Screen:3"), m.restore("Screen:3")),
    "restore into an unmounted repository (finding 7)": lambda m: (
        m.archive("Screen:3", "hdd"), m.purge("Screen:3"), m.repository_away(),
        m.restore("Screen:3"), m.repository_back(), m.restore("Screen:3")),
    "a hard-linked primary file (finding 7)": lambda m: (
        m.archive("Project:2", "hdd"),
        m.world_rule("hard link", lambda: (os.link(_file_of(m, "Project:2"),
                                                   _file_of(m, "Project:2") + ".hardlink"),
                                           m.model.foreign.__setitem__(
                                               _file_of(m, "Project:2") + ".hardlink",
                                               m.model.expected[_file_of(m, "Project:2")]),
                                           "hard link beside it")[-1]),
        m.purge("Project:2")),
    "a purge killed before its second file operation, run again": lambda m: (
        m.archive("Project:2", "link"), m.kill_mid_step(op="purge", key="Project:2", at=3)),
    "a location taken away before the restore": lambda m: (
        m.archive("Screen:3", "hdd"), m.purge("Screen:3"), m.location_away("hdd"),
        m.restore("Screen:3"), m.location_back("hdd"), m.restore("Screen:3")),
}
def _fileset_pick(machine, key):
    """The `pick` with which delete_fileset deletes a fileset whose file only `key`
    holds."""
    path = _file_of(machine, key, hashed=True)
    paths = machine.world.paths
    folder, name = os.path.split(path)
    with machine.world.db.cursor() as cur:
        cur.execute("SELECT id FROM fileset ORDER BY id")
        ids = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT e.fileset FROM filesetentry e JOIN originalfile o"
                    " ON o.id = e.originalfile WHERE o.path = %s AND o.name = %s",
                    [folder[len(paths.managed_dir) + 1:] + "/", name])
        return ids.index(cur.fetchone()[0])


def _hardlink_all_of(machine, key):
    """A hard link beside each file of `key` in the managed repository, so whichever
    file a race picks is hard-linked."""
    m = machine.model

    def action():
        paths = sorted(p for p in machine.present_files(m.collections_files()[key])
                       if "ManagedRepository" in p)
        for path in paths:
            os.link(path, path + ".hardlink")
            m.foreign[path + ".hardlink"] = m.expected[path]
        return f"{len(paths)} hard links beside {key}'s files"
    machine.world_rule("hard links", action)


SCENARIOS.update({
    # Long form, seed 24: the world's re-import gives the path a new inode; the purge
    # must keep it (new bytes, in no copy), and the hard-link check must not take the
    # world's new inode for a purge (it did, before the model knew of re-imports).
    "a fileset deleted in OMERO after the purge, then restore": lambda m: (
        m.archive("Project:2", "hdd"), m.purge("Project:2"),
        m.delete_fileset(pick=_fileset_pick(m, "Project:2")), m.restore("Project:2")),
    "a fileset deleted in OMERO after a purge to a symlink location, then restore":
        lambda m: (m.archive("Screen:3", "link"), m.purge("Screen:3"),
                   m.delete_fileset(pick=_fileset_pick(m, "Screen:3")),
                   m.restore("Screen:3"), m.archive("Screen:3", "hdd")),
    "a fileset deleted in OMERO during the purge": lambda m: (
        m.archive("Screen:3", "hdd"),
        m.purge_with_race("Screen:3", "delete fileset", _fileset_pick(m, "Screen:3"))),
    # Long form, seed 45: a purge read a copy and found it damaged, then kept the file;
    # once the disk was away, the next purge trusted the copy's older audit and deleted
    # the primary, whose bytes were then in no whole copy. A damaged copy found by a
    # purge is now recorded (the file unverified, the copy failed) as an audit would.
    "a copy found damaged by a purge is not trusted on its older audit later": lambda m: (
        m.archive("Screen:3", "hdd"), m.audit("hdd"),
        m.world_rule("bag file", lambda: m.damage_bag_file(
            {m.model.relpath[_file_of(m, "Screen:3")]}, random.Random(1), "truncate")),
        m.purge("Screen:3"), m.location_away("hdd"), m.purge("Screen:3")),
    "a hard-linked file re-imported during the purge (long form, seed 24)": lambda m: (
        m.archive("Project:2", "hdd"), _hardlink_all_of(m, "Project:2"),
        m.purge_with_race("Project:2", "reimport", 3)),
})
SCENARIOS.update({
    "a folder replaced by a symlink during the purge (finding 3)": lambda m: (
        m.archive("Screen:3", "hdd"),
        m.purge_with_race("Screen:3", "symlink folder", 0)),
    "a folder replaced by a symlink during the restore (finding 3)": lambda m: (
        m.archive("Screen:3", "hdd"), m.purge("Screen:3"),
        m.restore_with_race("Screen:3", "symlink folder", 0)),
    "the repository unmounted during the restore (finding 7)": lambda m: (
        m.archive("Screen:3", "hdd"), m.purge("Screen:3"),
        m.restore_with_race("Screen:3", "repository away", 0), m.repository_back(),
        m.restore("Screen:3")),
    "the repository unmounted, then an archive (the marker)": lambda m: (
        m.repository_away(), m.archive("Project:1", "hdd"), m.repository_back(),
        m.archive("Project:1", "hdd")),
    "a file rewritten during the archive": lambda m: (
        m.archive_with_race("Screen:3", "hdd", "rewrite keeping mtime", 1), m.purge("Screen:3")),
})


SCENARIOS.update({
    "a restore of one of two holders purged together, refused half-way": lambda m: (
        m.archive("Project:1", "hdd"), m.archive("Project:2", "hdd"),
        m.joint_purge(["Project:1", "Project:2"]),
        m.restore_with_race("Project:1", "symlink folder", 0)),
    "a Screen purged, then emptied by the world": lambda m: (
        m.archive("Screen:3", "hdd"), m.purge("Screen:3"), m.unlink(pick=_link_index(
            m, "screenplatelink", 3, 3))),
    "a folder of the location replaced by a symlink, then archive and purge": lambda m: (
        m.archive("Screen:3", "link"), m.symlink_folder(pick=1, area="link"),
        m.archive("Project:2", "link"), m.purge("Screen:3"), m.restore("Screen:3")),
})


# Violations the model-based test finds and that are not fixed yet (strict xfail, so a
# fix shows up). Found and fixed so far: the first archive writing the repository's
# marker into the bare mount point of an unmounted share (now recorded only once the
# plan found files to copy); archive writing its bag through a symlinked folder of the
# location (now refused: archive._real_folders); a restore refused half-way leaving a
# holder purged along 'purged' with its files back (now settled in any case).
KNOWN = {}


@pytest.mark.parametrize("scenario", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN[name]))
    if name in KNOWN else name for name in SCENARIOS])
def test_finding(machine, scenario):
    SCENARIOS[scenario](machine)
    assert machine.log

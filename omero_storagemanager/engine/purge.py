"""Purge: free primary storage, deciding from what is on disk and in OMERO now.

A primary file is deleted (or, when its copy lies at a symlink-type location, replaced by
a link to that copy, so OMERO keeps serving it) only when, at that moment:
  - `copies_required` copies of exactly its bytes are there now, at distinct locations:
    found on disk, size checked, content read and compared (purgecheck.py; a copy that
    cannot be read now counts only with a recent audit);
  - the primary is the file that was copied: same device, inode, size and mtime (ns) as
    recorded (PrimaryFile), one link, a regular file; an in-place import's link and its
    target are never touched;
  - every other holder of the file (any Project or Screen, and holders outside them:
    orphan Datasets and Images, annotations on any object) is purged in this job or
    already purged.
The plan (plan_purge, also the dry run) checks all of that with stats and says how many
bytes the content checks will read; the purge reads the copies, then re-checks, file by
file just before each delete, on a directory descriptor (beneath.py), that the primary
and the copy are still the files checked and that no holder appeared.

Each file gets a PurgedFile row (INTENT) for its collection and for every holder purged
with it, before it is touched, marked PURGED after; a purge killed at any instant is
finished by running it again (INTENT rows are settled from what is on disk).
"""
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import List, Optional, Tuple

from ..catalog import membership
from ..catalog.collections import parse_key
from ..catalog.inventory import InventoryReader
from ..models import Collection, Copy, CopyFile, Location, PrimaryFile, PurgedFile
from . import beneath, purgecheck, purgetags
from .disk import stat_inventory
from .locks import collection_lock
from .progress import NullProgress

ARCHIVED_PREFIX = "(archived) "
BATCH = 256  # files checked, re-checked for holders and deleted together


class PurgeError(Exception):
    pass


@dataclass
class Candidate:
    """A file the plan would free, with the copies it relies on."""
    record: object  # FileRecord, stat'ed
    relpath: str
    copies: list  # [purgecheck.CopyAt], one per location, copies_required of them
    primary: Optional[object]  # PrimaryFile whose identity matches the file now, or None
    link: bool  # replace by a link to the copy at a symlink location

    @property
    def chosen(self):
        return self.copies[0]


@dataclass
class PurgePlan:
    collection: str
    freed: List[Candidate] = field(default_factory=list)
    blocked: List[Tuple[str, str]] = field(default_factory=list)  # path, reason
    already: int = 0
    read_bytes: int = 0  # what the content checks of the copies (and primaries) read
    audited: int = 0  # copies trusted on a recent audit instead of read now
    folders: object = None  # beneath.ReadFolders of the copies' folders (reopened lazily)
    damaged: dict = field(default_factory=dict)  # CopyFile -> what a check found wrong

    @property
    def freed_bytes(self):
        return sum(c.record.disk_size or 0 for c in self.freed)


def _verified_rows(relpaths):
    """relpath -> [CopyFile] in verified copies (any collection's bag: shared files)."""
    rows = list(CopyFile.objects.filter(relpath__in=relpaths, verified=True,
                                        copy__state=Copy.VERIFIED)
                .defer("source_mtime").order_by("-copy__created"))
    # Few copies hold many files: each Copy (with its Location) made once, not per row.
    copies = Copy.objects.select_related("location").in_bulk({r.copy_id for r in rows})
    found = {}
    for row in rows:
        row.copy = copies[row.copy_id]
        found.setdefault(row.relpath, []).append(row)
    return found


def _states_of(keys):
    """key -> state of the collections among these holder keys (one query)."""
    ids = {}
    for key in set(keys):
        if membership.is_collection_key(key):
            kind, oid = parse_key(key)
            ids.setdefault(kind, []).append(oid)
    states = {}
    for kind, oids in ids.items():
        for collection in Collection.objects.filter(kind=kind, omero_id__in=oids, gone=False):
            states[collection.key] = collection.state
    return states


def _other_holders(holders, allowed, states):
    """Holders of the file that stay online: not purged with it, not purged already.
    Holders that are not collections (orphans, annotations elsewhere) always count."""
    online = []
    for holder in holders:
        if holder in allowed:
            continue
        if not membership.is_collection_key(holder):
            online.append(holder)  # not a Project or Screen: never purged by us
            continue
        if states.get(holder) != Collection.PURGED:
            online.append(holder)
    return online


def _choose_copies(rows, sha1, size, copies_required, locations, prefer_symlink):
    """copies_required CopyAt at distinct locations holding `sha1` (None: any checksum,
    to be compared with the primary read now), or (None, why not)."""
    chosen, seen, reasons = [], set(), []
    for row in sorted(rows, key=lambda r: (r.copy.location.type != Location.SYMLINK)
                      if prefer_symlink else 0):
        if row.size != size or (sha1 is not None and row.checksum != sha1):
            continue
        if row.copy.location_id in seen:
            continue
        found, why = locations.find(row)
        if found is None:
            reasons.append(why)
            continue
        seen.add(row.copy.location_id)
        chosen.append(found)
        if len(chosen) == copies_required:
            return chosen, None
    if reasons:
        return None, "; ".join(sorted(set(reasons)))
    return None, (f"{len(chosen)} verified copies, {copies_required} required "
                  "(of its current bytes, there now)")


def plan_purge(conn, paths, collection, copies_required=1, along_with=(),
               include_attachments=True, audit_max_age_days=30, sample_above=0):
    """What a purge of `collection` would free, and what keeps the rest (a dry run:
    stats only; read_bytes says what the purge's content checks will read)."""
    inventory = InventoryReader(conn, paths, include_attachments).read(
        collection.kind, collection.omero_id)
    if not inventory.files:
        raise PurgeError(f"{collection.key} holds no files: there is nothing to purge")
    stat_inventory(inventory, paths)
    done = dict(PurgedFile.objects.filter(collection=collection)
                .exclude(state=PurgedFile.RESTORED).values_list("path", "state"))
    states = _states_of(k for r in inventory.files for k in r.shared_with)
    allowed = set(along_with) | {collection.key}
    relpaths = {r.path: paths.relative(r.path) for r in inventory.files}
    copies = _verified_rows(list(relpaths.values()))
    primaries = {p.relpath: p for p in PrimaryFile.objects.filter(relpath__in=relpaths.values())}
    locations = purgecheck.Locations(audit_max_age_days)
    result = PurgePlan(collection.key, folders=locations.folders)
    try:
        _plan_files(result, inventory, relpaths, done, states, allowed, copies, primaries,
                    locations, copies_required, sample_above)
    finally:
        locations.close()
    result.damaged = dict(locations.damaged)
    # Purged files the inventory no longer lists: pyramids are found on disk only.
    listed = set(relpaths)
    result.already += sum(1 for path, state in done.items()
                          if state == PurgedFile.PURGED and path not in listed)
    return result


def _plan_files(result, inventory, relpaths, done, states, allowed, copies, primaries,
                locations, copies_required, sample_above):
    for record in inventory.files:
        relpath = relpaths[record.path]
        if done.get(record.path) == PurgedFile.PURGED:
            result.already += 1
            continue
        if record.symlink_target:
            result.blocked.append((record.path, "in-place import: the link's target is not "
                                                "OMERO's and is never purged"))
            continue
        if record.exists is False:
            result.blocked.append((record.path, "missing from the repository"))
            continue
        online = _other_holders(record.shared_with, allowed, states)
        if online:
            result.blocked.append((record.path, "also in " + ", ".join(online)
                                   + ", which stays online"))
            continue
        if record.nlink != 1:
            result.blocked.append((record.path, purgecheck.primary_problem(
                _Lstat(record), None) or "not a regular file"))
            continue
        primary = primaries.get(relpath)
        if primary is not None and primary.identity() != tuple(record.identity):
            primary = None  # rewritten or replaced since: its bytes are read now
        chosen, why = _choose_copies(copies.get(relpath, []),
                                     primary.sha1 if primary else None, record.disk_size,
                                     copies_required, locations, prefer_symlink=True)
        if chosen is None:
            result.blocked.append((record.path, why))
            continue
        link = chosen[0].copy_file.copy.location.type == Location.SYMLINK
        result.freed.append(Candidate(record, relpath, chosen, primary, link))
        for copy_at in chosen:
            result.read_bytes += purgecheck.reads_for(copy_at, sample_above)
            result.audited += copy_at.root is None
        if primary is None:
            result.read_bytes += record.disk_size or 0


class _Lstat:
    """A FileRecord seen as the stat result primary_problem() wants."""

    def __init__(self, record):
        self.st_mode = 0o100000 if record.identity else 0o120000
        self.st_nlink = record.nlink or 0


# -- carrying a plan out ---------------------------------------------------------------

def record_damage(damaged, log):
    """What a purge found wrong with copies ({CopyFile: why}) recorded as an audit records
    it: the file unverified, its copy failed (no purge relies on it, restore tries it
    last), so that a later purge never trusts an older audit of it once its disk is
    away. An audit that finds the copy whole again, or a new archive, makes it count."""
    if not damaged:
        return
    now = datetime.now(timezone.utc)
    CopyFile.objects.filter(pk__in=[f.pk for f in damaged]).update(verified=False)
    Copy.objects.filter(pk__in={f.copy_id for f in damaged}).update(
        state=Copy.FAILED_AUDIT, last_audit=now, last_audit_ok=False)
    for copy_file, why in damaged.items():
        log(f"{why}: the copy is marked failed (audit it, or archive again)")


def _check_contents(batch, paths, sample_above, pool):
    """Read the copies (and the primaries of unknown identity); returns
    {id(candidate): reason to keep it}. Copies found with other bytes than recorded are
    marked `damaged` (CopyAt)."""
    def check(candidate):
        root, rel = paths.root_of(candidate.relpath)
        if candidate.primary is None:
            # No record of these bytes when copied: read the primary now and require a
            # copy of exactly them.
            try:
                digest, before, after = purgecheck.sha1_beneath(root, rel)
            except OSError as exc:
                return f"cannot read it: {exc.strerror or exc}"
            if before != after or before != tuple(candidate.record.identity):
                return "changed while it was checked: archive it again first"
            candidate.primary = PrimaryFile(relpath=candidate.relpath, device=before[0],
                                            inode=before[1], size=before[2],
                                            mtime_ns=before[3], ctime_ns=before[4],
                                            sha1=digest)
            wrong = [c for c in candidate.copies if c.copy_file.checksum != digest]
            if wrong:
                return "changed since it was archived: archive it again first"
        for copy_at in candidate.copies:
            problem = purgecheck.check_copy_content(copy_at, root, rel, sample_above)
            if problem:
                return problem
        return None

    return {id(c): why for c, why in zip(batch, pool.map(check, batch)) if why}


def _holders_now(conn, collection, batch):
    """path -> the other holders' keys, read from OMERO now (users link and unlink
    while we work), along every role each file has; a file no longer in the
    collection is absent. One statement per batch (membership.py)."""
    held = membership.record_holders(conn, [c.record for c in batch], every_role=True)
    me = collection.key
    return {path: sorted(keys - {me}) for path, keys in held.items() if me in keys}


class _Folders:
    """The folders of one batch's deletes, each opened once beneath its root (no link
    followed) and fsynced once after the batch's unlinks: a row says PURGED only once
    the unlink is durable."""

    def __init__(self):
        self.roots, self.dirs = {}, {}

    def open(self, root, rel):
        """(directory descriptor, name) of root/rel."""
        parts = beneath.split(rel)
        key = (root, tuple(parts[:-1]))
        if key not in self.dirs:
            if root not in self.roots:
                self.roots[root] = beneath.open_root(root)
            self.dirs[key] = beneath.open_dir(self.roots[root], parts[:-1], root_name=root)
        return self.dirs[key], parts[-1]

    def sync(self):
        for fd in self.dirs.values():
            os.fsync(fd)

    def close(self):
        for fd in [*self.dirs.values(), *self.roots.values()]:
            os.close(fd)
        self.roots, self.dirs = {}, {}


def _free_at(candidate, paths, folders, copy_folders):
    """The delete itself: the primary's folder opened beneath its root, the file checked
    to be the one planned, then unlinked (or replaced by a link) by name in that folder.
    Returns None, or why the file was kept. The folder is fsynced with its batch."""
    for copy_at in candidate.copies:
        problem = purgecheck.copy_unchanged(copy_at, copy_folders)
        if problem:
            return problem
    dfd, name = folders.open(*paths.root_of(candidate.relpath))
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return "gone from the repository before it could be purged"
    problem = purgecheck.primary_problem(st, candidate.primary.identity())
    if problem:
        return problem
    if candidate.link:
        tmp = name + ".sm-link"
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
        os.symlink(candidate.chosen.path, tmp, dir_fd=dfd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)
    return None


def _settle_intents(collection, paths):
    """A purge killed between INTENT and PURGED: the file is gone (or is our link) ->
    PURGED; still there -> the row goes, the new plan decides afresh."""
    for row in PurgedFile.objects.filter(collection=collection, state=PurgedFile.INTENT):
        root, rel = paths.root_of(row.relpath)
        try:
            st = beneath.lstat(root, rel)
        except FileNotFoundError:
            st = None
        except OSError:
            continue  # a folder became a link: leave the row, the plan keeps the file
        purged = st is None or (row.linked and (st.st_mode & 0o170000) == 0o120000)
        if purged:
            PurgedFile.objects.filter(pk=row.pk).update(state=PurgedFile.PURGED)
        else:
            PurgedFile.objects.filter(pk=row.pk).delete()


def _joint_holders(holders, along_with, me):
    keys = [h for h in holders if h in along_with and h != me]
    found = []
    for key in keys:
        kind, oid = parse_key(key)
        found.extend(Collection.objects.filter(kind=kind, omero_id=oid, gone=False))
    return found


def _intent_rows(candidate, collection, joint):
    chosen = candidate.chosen.copy_file
    return [PurgedFile(collection=holder, path=candidate.record.path, relpath=candidate.relpath,
                       size=candidate.record.disk_size, sha1=candidate.primary.sha1,
                       mode=chosen.mode, copy_file=chosen, linked=candidate.link,
                       state=PurgedFile.INTENT)
            for holder in [collection, *joint]]


def _ready(batch, conn, collection, along_with, problems):
    """(candidate, joint holders) of the batch that still pass, and (path, why) of the
    others: the content checks' problems, and the holders as OMERO has them now, read
    right before the batch's deletes."""
    now = _holders_now(conn, collection, batch)
    states = _states_of(k for keys in now.values() for k in keys)
    allowed = set(along_with) | {collection.key}
    ready, kept, me = [], [], collection.key
    for candidate in batch:
        why = problems.get(id(candidate))
        current = now.get(candidate.record.path)
        if why is None and current is None:
            why = f"no longer in {me}"
        if why is None:
            online = _other_holders(current, allowed, states)
            if online:
                why = "also in " + ", ".join(online) + ", which stays online"
        if why is None:
            ready.append((candidate, _joint_holders(current, along_with, me)))
        else:
            kept.append((candidate.record.path, why))
    return ready, kept


def _delete_batch(ready, collection, paths, copy_folders):
    """INTENT rows for the batch, then each file re-checked and deleted, the folders
    fsynced, then PURGED (rows of files kept at the last check are dropped). Returns
    (freed candidates, [(path, why)] kept, joint holders' pks that got rows)."""
    rows = PurgedFile.objects.bulk_create(
        [row for candidate, joint in ready for row in _intent_rows(candidate, collection, joint)])
    by_path = {}
    for row in rows:
        by_path.setdefault(row.path, []).append(row.pk)
    freed, kept, touched = [], [], set()
    folders = _Folders()
    try:
        for candidate, joint in ready:
            try:
                why = _free_at(candidate, paths, folders, copy_folders)
            except OSError as exc:
                why = f"{exc.strerror or exc}"
            if why is None:
                freed.append(candidate)
                touched.update(h.pk for h in joint)
            else:
                kept.append((candidate.record.path, why))
        folders.sync()
    finally:
        folders.close()
    PurgedFile.objects.filter(pk__in=[pk for c in freed for pk in by_path[c.record.path]]
                              ).update(state=PurgedFile.PURGED)
    PurgedFile.objects.filter(pk__in=[pk for path, _ in kept for pk in by_path[path]]).delete()
    # The files are gone: what was known of them goes too (restore records anew).
    PrimaryFile.objects.filter(relpath__in=[c.relpath for c in freed]).delete()
    return freed, kept, touched


def _carry_out(conn, paths, collection, plan, along_with, sample_above, progress, log):
    freed, kept = [], []
    touched = set()  # joint holders that got rows
    with ThreadPoolExecutor(2) as pool, closing(plan.folders):
        for start in range(0, len(plan.freed), BATCH):
            batch = plan.freed[start:start + BATCH]
            problems = _check_contents(batch, paths, sample_above, pool)
            record_damage({c.copy_file: problems[id(candidate)] for candidate in batch
                           for c in candidate.copies if c.damaged}, log)
            ready, not_ready = _ready(batch, conn, collection, along_with, problems)
            done, last_kept, joint = _delete_batch(ready, collection, paths, plan.folders)
            touched |= joint
            freed.extend(done)
            progress.advance(0, len(done), sum(c.record.disk_size or 0 for c in done))
            for path, why in not_ready + last_kept:
                kept.append((path, why))
                log(f"{collection.key}: kept {path}: {why}")
    return freed, kept, touched


def _purge_collection(conn, paths, collection, gateway=None, copies_required=1,
                      along_with=(), rename=False, archive_user_id=None, archive_group_id=None,
                      include_attachments=True, log=print, progress=None,
                      audit_max_age_days=30, sample_above=0):
    """Purge what can be purged; returns the PurgePlan as carried out."""
    progress = progress or NullProgress()
    _settle_intents(collection, paths)
    plan = plan_purge(conn, paths, collection, copies_required, along_with,
                      include_attachments, audit_max_age_days, sample_above)
    record_damage(plan.damaged, lambda line: log(f"{collection.key}: {line}"))
    progress.start(len(plan.freed))
    freed, kept, touched = _carry_out(conn, paths, collection, plan, along_with,
                                      sample_above, progress, log)
    progress.done()
    plan.freed, plan.blocked = freed, plan.blocked + kept
    state = collection_state(collection, complete=not plan.blocked)
    collection.state = state
    for holder in Collection.objects.filter(pk__in=touched):
        collection_state(holder)  # its own purge, next in the job, completes it
    try:
        if gateway is not None and state in (Collection.PURGED, Collection.PARTIALLY_PURGED):
            mark_purged_in_omero(gateway, collection, rename, archive_user_id,
                                 archive_group_id)
    finally:
        # The bags relied on carry the records, so a lost database can be rebuilt
        # (purgetags.py); after the OMERO marking, whose originals they keep.
        purgetags.write_for_collection(collection, lambda line: log(f"{collection.key}: {line}"))
    log(f"{collection.key}: purged {len(freed)} file(s), {plan.freed_bytes} bytes; "
        f"{len(plan.blocked)} kept; state {state}")
    return plan


def collection_state(collection, complete=None):
    """The state the collection's PurgedFile rows say, stored and returned. complete:
    True when every file it holds is purged (a purge that kept nothing), False when
    some are kept, None when unknown (a holder purged along: the state it had if that
    was purged, else partially purged). Without purged files: never 'purged' (a purge
    that freed nothing changes nothing; a state saying purged would lie)."""
    purged = PurgedFile.objects.filter(collection=collection).exclude(
        state=PurgedFile.RESTORED).exists()
    if not purged:
        state = collection.state
        if state in (Collection.PURGED, Collection.PARTIALLY_PURGED):
            has_copy = Copy.objects.filter(collection=collection, state=Copy.VERIFIED).exists()
            state = Collection.ARCHIVED if has_copy else Collection.ONLINE
    elif complete is True:
        state = Collection.PURGED
    elif complete is False or collection.state != Collection.PURGED:
        state = Collection.PARTIALLY_PURGED
    else:
        state = Collection.PURGED
    if state != collection.state:
        Collection.objects.filter(pk=collection.pk).update(state=state)
    return state


def state_pairs(collection, state):
    copies = Copy.objects.filter(collection=collection, state=Copy.VERIFIED).select_related(
        "location").order_by("created")
    pairs = [("state", state), ("since", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    for copy in copies:
        pairs.append(("copy", f"{copy.location.name} (id {copy.location_id}): {copy.bag_path}"))
    if state in (Collection.PURGED, Collection.PARTIALLY_PURGED):
        pairs.append(("how to get it back", "Storage tab in OMERO.web: request a restore"))
    return pairs


def mark_purged_in_omero(gateway, collection, rename, archive_user_id, archive_group_id):
    """Manual 6.4: rename, move to the archive user and group (remembering the originals),
    and in every case the state annotation. Each step is skipped when already done."""
    current = gateway.describe(collection.kind, collection.omero_id)
    updates = {}
    if collection.original_name is None:
        updates.update(original_name=current["name"], original_owner_id=current["owner_id"],
                       original_group_id=current["group_id"])
        Collection.objects.filter(pk=collection.pk).update(**updates)
        for key, value in updates.items():
            setattr(collection, key, value)
    if rename and not current["name"].startswith(ARCHIVED_PREFIX):
        gateway.rename(collection.kind, collection.omero_id, ARCHIVED_PREFIX + current["name"])
        # What OMERO shows now, at once (the catalogue learns it at its next refresh).
        Collection.objects.filter(pk=collection.pk).update(name=ARCHIVED_PREFIX + current["name"])
    if archive_group_id is not None and current["group_id"] != archive_group_id:
        gateway.chgrp(collection.kind, collection.omero_id, archive_group_id)
    if archive_user_id is not None and current["owner_id"] != archive_user_id:
        gateway.chown(collection.kind, collection.omero_id, archive_user_id)
    gateway.set_state(collection.kind, collection.omero_id,
                      state_pairs(collection, collection.state))


def purge_collection(conn, paths, collection, gateway=None, copies_required=1, along_with=(),
                     rename=False, archive_user_id=None, archive_group_id=None,
                     include_attachments=True, log=print, progress=None,
                     audit_max_age_days=30, sample_above=0):
    """Purge under the collection's lock (locks.py): refused at once while
    another archive, purge or restore of the same collection runs (CollectionBusy)."""
    with collection_lock(collection, "purge"):
        return _purge_collection(conn, paths, collection, gateway, copies_required,
                                 along_with, rename, archive_user_id, archive_group_id,
                                 include_attachments, log, progress,
                                 audit_max_age_days, sample_above)

"""Which repository files OMERO still has rows for: paths.py read backwards.

A restore asks before it writes a purged file back. Users go on working on a purged
collection in OMERO (it is still listed there): when they delete its Images, OMERO
deletes their filesets' rows and files, and a purged file whose OMERO object is gone is
nobody's any more. Writing it back would leave bytes in the repository that nothing
references and nothing will ever remove; it stays in its archive copy instead.

Only a positive answer counts as gone: the path has a shape this module knows and no
row stands behind it now. A path of another shape is taken as still OMERO's (restored).

    ManagedRepository/<path><name>   an originalfile row with that path and name
                                     (path ends with '/'; a leading '/' is tolerated)
    Files/[Dir-NNN/...]<id>          the originalfile row <id> (OMERO 4, attachments)
    Pixels/[Dir-NNN/...]<id>         the pixels row <id> (its file, or its _pyramid)
"""
import re

_NUMBERED = re.compile(r"(?:Dir-\d{3}/)*(\d+)")
PYRAMID = "_pyramid"


def object_of(relpath):
    """What stands behind a path relative to OMERO's roots (RepositoryPaths.relative):
    ("managed", folder, name), ("file", id), ("pixels", id), or None (unknown shape)."""
    head, _, rest = relpath.partition("/")
    if head == "ManagedRepository":
        folder, _, name = rest.rpartition("/")
        return ("managed", folder, name) if folder and name else None
    if head in ("Files", "Pixels"):
        stem = rest[:-len(PYRAMID)] if head == "Pixels" and rest.endswith(PYRAMID) else rest
        match = _NUMBERED.fullmatch(stem)
        if match:
            return ("file" if head == "Files" else "pixels", int(match.group(1)))
    return None


# The paths of %s (folder %s, name %s) with no originalfile row of a repository. Each is
# looked up through OMERO's own unique index on (repo, the path split at '/'), one
# lookup per path (originalfile_repo_path_index, OMERO 5.4+: no two rows of a repository
# share a path); its repositories are found by a loose scan of the repo index (a few
# values), so nothing reads the whole table, whose rows number in the millions.
_MANAGED_GONE = """
WITH RECURSIVE repos(repo) AS (
    (SELECT repo FROM originalfile WHERE repo IS NOT NULL ORDER BY repo LIMIT 1)
    UNION ALL
    SELECT (SELECT o.repo FROM originalfile o WHERE o.repo > r.repo ORDER BY o.repo LIMIT 1)
      FROM repos r WHERE r.repo IS NOT NULL)
SELECT r.rel FROM unnest(%s::text[], %s::text[], %s::text[]) AS r(rel, folder, name)
 WHERE NOT EXISTS (
    SELECT 1 FROM originalfile o
     WHERE o.repo IS NOT NULL
       AND o.repo = ANY(ARRAY(SELECT repo FROM repos WHERE repo IS NOT NULL))
       AND regexp_split_to_array('/' || o.path || o.name || '/', '/+')
         = regexp_split_to_array('/' || r.folder || '/' || r.name || '/', '/+'))
"""


def gone_from_omero(conn, relpaths):
    """The set of these relpaths whose OMERO object no longer exists: one statement per
    kind of path, whatever their number."""
    managed, files, pixels = {}, {}, {}
    for rel in set(relpaths):
        found = object_of(rel)
        if found is None:
            continue
        if found[0] == "managed":
            managed[rel] = found[1:]
        else:
            (files if found[0] == "file" else pixels).setdefault(found[1], []).append(rel)
    gone = set()
    with conn.cursor() as cur:
        if managed:
            rels = list(managed)
            cur.execute(_MANAGED_GONE,
                        [rels, [managed[r][0] for r in rels], [managed[r][1] for r in rels]])
            gone.update(row[0] for row in cur.fetchall())
        for table, wanted in (("originalfile", files), ("pixels", pixels)):
            if not wanted:
                continue
            cur.execute(f"SELECT id FROM {table} WHERE id = ANY(%s)", [list(wanted)])
            present = {row[0] for row in cur.fetchall()}
            for oid, rels in wanted.items():
                if oid not in present:
                    gone.update(rels)
    return gone

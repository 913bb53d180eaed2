"""Projects and Screens as OMERO has them: id, name, owner, group, creation time."""
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

KINDS = ("project", "screen")
# [0-9], not \d: \d takes any script's digits, and int() reads them ("Project:\u0664").
_KEY = re.compile(r"^\s*(project|screen)\s*:\s*([0-9]{1,18})\s*$", re.IGNORECASE)


class UnknownCollection(LookupError):
    """A collection key that does not name an existing Project or Screen."""


def parse_key(text):
    """'Project:12' -> ('project', 12). Refuses anything else with a clear message."""
    match = _KEY.match(str(text))
    if not match:
        raise ValueError(f"not a collection: {text!r} (write Project:<id> or Screen:<id>)")
    return match.group(1).lower(), int(match.group(2))


def as_utc(value):
    """OMERO stores `timestamp without time zone`; the app keeps aware datetimes (UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def format_key(kind, oid):
    return f"{kind.capitalize()}:{oid}"


@dataclass(frozen=True)
class CollectionRow:
    kind: str
    id: int
    name: str
    owner_id: int
    owner_name: str
    group_id: int
    group_name: str
    created: Optional[datetime]

    @property
    def key(self):
        return format_key(self.kind, self.id)


# Table names come from KINDS, never from input.
_LIST = """
SELECT %(kind)s, c.id, c.name, c.owner_id, e.omename, c.group_id, g.name, ev.time
FROM {table} c
JOIN experimenter e ON e.id = c.owner_id
JOIN experimentergroup g ON g.id = c.group_id
LEFT JOIN event ev ON ev.id = c.creation_id
"""


def list_collections(conn, kinds=KINDS, ids=None):
    """Every Project and Screen (or those of `ids`, a list of (kind, id))."""
    rows = []
    with conn.cursor() as cur:
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"not a collection kind: {kind!r}")
            query = _LIST.format(table=kind)
            params = {"kind": kind}
            if ids is not None:
                wanted = [oid for k, oid in ids if k == kind]
                if not wanted:
                    continue
                query += " WHERE c.id = ANY(%(ids)s)"
                params["ids"] = wanted
            cur.execute(query + " ORDER BY c.id", params)
            rows.extend(CollectionRow(*row[:7], as_utc(row[7])) for row in cur.fetchall())
    return rows


def get_collection(conn, kind, oid):
    found = list_collections(conn, kinds=[kind], ids=[(kind, oid)])
    if not found:
        raise UnknownCollection(f"{format_key(kind, oid)} does not exist in OMERO")
    return found[0]

"""Where a copy lives inside a location, and how an archiver order names it.

Manual 7.1-7.3: a copy of a collection goes to
    <mount>/<id>/write/<project|screen>/<groupId>/<userId>/<collectionId>/<datetime>
and the automated archiver's orders describe it as
    <project|screen>$<groupId>$<userId>$<collectionId>$<datetime>
with datetime like 16-11-2009_154634.
"""
from dataclasses import dataclass
from datetime import datetime as _datetime
from pathlib import PurePosixPath
from typing import Union

DATETIME_FORMAT = "%d-%m-%Y_%H%M%S"
KINDS = ("project", "screen")

# A directory whose name ends with one of these is work in progress (being written,
# being removed), never a bag: nothing may read, list or restore from it.
PARTIAL_SUFFIX = ".partial"
EVICTING_SUFFIX = ".evicting"
TRANSIENT_SUFFIXES = (PARTIAL_SUFFIX, EVICTING_SUFFIX)


def is_transient(name: str) -> bool:
    return name.endswith(TRANSIENT_SUFFIXES)


def format_when(when: Union[_datetime, str]) -> str:
    """The manual's datetime string; an already formatted string is checked and kept."""
    if isinstance(when, _datetime):
        return when.strftime(DATETIME_FORMAT)
    parse_when(when)
    return when


def parse_when(text: str) -> _datetime:
    try:
        return _datetime.strptime(text, DATETIME_FORMAT)
    except (TypeError, ValueError):
        raise ValueError(f"not a copy datetime like 16-11-2009_154634: {text!r}") from None


def _check_ids(kind, group_id, user_id, collection_id):
    if kind not in KINDS:
        raise ValueError(f"collection kind must be 'project' or 'screen', not {kind!r}")
    for name, value in (("group id", group_id), ("user id", user_id),
                        ("collection id", collection_id)):
        # bool is an int subclass; True as an id is always a mistake.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")


def bag_relpath(kind, group_id, user_id, collection_id, when) -> str:
    """'project/2/2/101/16-11-2009_154634': a copy's path below write/ (and read/)."""
    _check_ids(kind, group_id, user_id, collection_id)
    return f"{kind}/{group_id}/{user_id}/{collection_id}/{format_when(when)}"


def order_description(kind, group_id, user_id, collection_id, when) -> str:
    """'project$2$2$101$16-11-2009_154634': the OrderDescription of an XML order."""
    return bag_relpath(kind, group_id, user_id, collection_id, when).replace("/", "$")


@dataclass(frozen=True)
class Order:
    """One copy as the archiver sees it. The backend fills in the folders."""

    kind: str
    group_id: int
    user_id: int
    collection_id: int
    datetime: str
    source_folder: str = ""
    destination_folder: str = ""

    def __post_init__(self):
        _check_ids(self.kind, self.group_id, self.user_id, self.collection_id)
        format_when(self.datetime)

    @property
    def relpath(self) -> str:
        return bag_relpath(self.kind, self.group_id, self.user_id, self.collection_id,
                           self.datetime)

    @property
    def description(self) -> str:
        return order_description(self.kind, self.group_id, self.user_id,
                                 self.collection_id, self.datetime)

    @classmethod
    def from_relpath(cls, relpath: str) -> "Order":
        parts = relpath.split("/")
        if len(parts) != 5 or not all(p.isdigit() for p in parts[1:4]):
            raise ValueError(f"not a copy path like project/2/2/101/16-11-2009_154634: "
                             f"{relpath!r}")
        kind, group_id, user_id, collection_id, when = parts
        return cls(kind, int(group_id), int(user_id), int(collection_id), when)


def safe_relpath(relpath: str, what: str = "path") -> PurePosixPath:
    """A relative path that stays below the directory it is joined to.

    Refuses absolute paths, '..', '.', empty components and NUL: joined to a
    location's root, any of them could reach outside it (or name the root itself).
    """
    if not isinstance(relpath, str) or not relpath:
        raise ValueError(f"{what} must be a non-empty relative path, not {relpath!r}")
    if "\x00" in relpath:
        raise ValueError(f"{what} contains a NUL character: {relpath!r}")
    if relpath.startswith("/"):
        raise ValueError(f"{what} must be relative, not absolute: {relpath!r}")
    parts = relpath.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"{what} must not contain {part or 'an empty component'!r} "
                             f"components: {relpath!r}")
    return PurePosixPath(*parts)

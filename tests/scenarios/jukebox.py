"""The DAX FFA software and its BluRay jukebox, as the manual's chapter 15 uses them.

Nothing here is the app: this is the third-party archiver on the other side of the XML
folder. It only reads what the app really writes there (the XML files, parsed as XML;
the folders they name) and answers the way the manual says FFA does (7.3, 15):

- an <archive> order: migrate the files of SourceFolder to two BluRay discs (one kept in
  the jukebox, one exported to be kept offline), check both against the source, then
  remove the source files and folder (RemoveSource, RemoveFolder) and the order
  (RemoveXmlAfterFinish);
- a <restore> order: after the jukebox's own delay (loading and reading a disc), copy
  the copy back from the jukebox's disc into DestinationFolder, and leave the order
  (RemoveXmlAfterFinish false: the app removes it). A disc that cannot be read fails
  the order, which stays (RemoveXmlAfterFailure false), and is tried again next hour.

It looks at its folder once an hour of the story's clock (poll(now) at each of the
stage's ticks acts once per clock hour).
"""
import filecmp
import os
import shutil
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ARCHIVE_TAGS = ("OrderDescription", "SourceFolder", "RemoveSource", "RemoveFolder",
                "RemoveXmlAfterFinish", "RemoveXmlAfterFailure")
RESTORE_TAGS = ("OrderDescription", "DestinationFolder", "RemoveXmlAfterFinish",
                "RemoveXmlAfterFailure")


class BadOrder(AssertionError):
    """An order FFA could not take: the app wrote something the manual's format is not."""


def read_order(path):
    """(root tag, {element: text}) of an order file, checked against the manual's format
    (the elements, in its order, and nothing else)."""
    root = ElementTree.parse(path).getroot()
    tags = {"archive": ARCHIVE_TAGS, "restore": RESTORE_TAGS}.get(root.tag)
    if tags is None:
        raise BadOrder(f"{path}: root element <{root.tag}>, not <archive> or <restore>")
    found = [child.tag for child in root]
    if tuple(found) != tags:
        raise BadOrder(f"{path}: elements {found}, the manual's are {list(tags)}")
    values = {child.tag: (child.text or "") for child in root}
    for tag, value in values.items():
        if tag.startswith("Remove") and value not in ("true", "false"):
            raise BadOrder(f"{path}: <{tag}> is {value!r}, not true or false")
    return root.tag, values


@dataclass
class Jukebox:
    """FFA, the jukebox and its discs (folders outside the app's location)."""

    xml_folder: Path
    discs: Path  # <discs>/jukebox/<OrderDescription>/, <discs>/offline/<OrderDescription>/
    restore_delay: timedelta = timedelta(hours=6)
    unreadable: set = field(default_factory=set)  # OrderDescriptions whose disc fails
    log: list = field(default_factory=list)  # (when, what, OrderDescription)
    _last_hour: object = None
    _seen: dict = field(default_factory=dict)  # order (name, inode, mtime) -> first seen
    _answered: set = field(default_factory=set)

    @property
    def in_jukebox(self):
        return self.discs / "jukebox"

    @property
    def offline(self):
        return self.discs / "offline"

    def poll(self, now):
        """FFA's look at its folder, at most once per hour of the clock."""
        hour = now.replace(minute=0, second=0, microsecond=0)
        if hour == self._last_hour:
            return
        self._last_hour = hour
        for path in sorted(Path(self.xml_folder).glob("*.xml")):
            kind, order = read_order(path)
            if kind == "archive":
                self._archive(path, order, now)
            else:
                self._restore(path, order, now)

    def orders(self, kind):
        """The orders in the folder now: [(file name, {element: text})] of this kind."""
        found = []
        for path in sorted(Path(self.xml_folder).glob("*.xml")):
            root, values = read_order(path)
            if root == kind:
                found.append((path.name, values))
        return found

    def did(self, what):
        return [description for _, done, description in self.log if done == what]

    # -- the two kinds of order --------------------------------------------------------------
    def _archive(self, path, order, now):
        description, source = order["OrderDescription"], Path(order["SourceFolder"])
        if not source.is_dir():
            self.log.append((now, "archive failed", description))
            if order["RemoveXmlAfterFailure"] == "true":
                path.unlink()
            return
        for disc in (self.in_jukebox, self.offline):
            burned = disc / description
            if burned.exists():
                shutil.rmtree(burned)  # a burn interrupted before: again, whole
            shutil.copytree(source, burned)
            if not same_tree(source, burned):
                raise AssertionError(f"the BluRay burn of {source} differs from it")
        if order["RemoveSource"] == "true":
            for top, _, names in os.walk(source):
                for name in names:
                    os.unlink(os.path.join(top, name))
        if order["RemoveFolder"] == "true":
            shutil.rmtree(source)
        if order["RemoveXmlAfterFinish"] == "true":
            path.unlink()
        self.log.append((now, "burned", description))

    def _restore(self, path, order, now):
        stat = path.stat()
        this = (path.name, stat.st_ino, stat.st_mtime_ns)
        if this in self._answered:
            return  # done; the order stays until the app removes it
        first = self._seen.setdefault(this, now)
        if now < first + self.restore_delay:
            return  # the jukebox is loading and reading the disc
        description, target = order["OrderDescription"], Path(order["DestinationFolder"])
        source = self.in_jukebox / description
        if description in self.unreadable or not source.is_dir():
            self.log.append((now, "restore failed", description))
            if order["RemoveXmlAfterFailure"] == "true":
                path.unlink()
            return
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target)
        self._answered.add(this)
        if order["RemoveXmlAfterFinish"] == "true":
            path.unlink()
        self.log.append((now, "restored", description))

    def load_offline_disc(self, description):
        """The admin brings the exported disc back and puts it in the jukebox in place of
        the one that cannot be read."""
        shutil.rmtree(self.in_jukebox / description)
        shutil.copytree(self.offline / description, self.in_jukebox / description)
        self.unreadable.discard(description)


def same_tree(a, b):
    """Same folders, same file names, same bytes (compared byte by byte)."""
    compared = filecmp.dircmp(a, b)
    if compared.left_only or compared.right_only or compared.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, compared.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(same_tree(Path(a, sub), Path(b, sub)) for sub in compared.common_dirs)

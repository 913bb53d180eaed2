"""The XML orders an automated location leaves for a third-party archiver (manual 7.3).

After a copy (the archiver moves write/<copy> to the archive, then removes the order):

    <archive>
    <OrderDescription>project$2$2$101$16-11-2009_154634</OrderDescription>
    <SourceFolder>/data/archive1/1/write/project/2/2/101/16-11-2009_154634</SourceFolder>
    <RemoveSource>true</RemoveSource>
    <RemoveFolder>true</RemoveFolder>
    <RemoveXmlAfterFinish>true</RemoveXmlAfterFinish>
    <RemoveXmlAfterFailure>false</RemoveXmlAfterFailure>
    </archive>

For a restore whose copy is not in the read cache (the archiver brings it back into
read/<copy> and leaves the order; this app removes it once the copy is back):

    <restore>
    <OrderDescription>project$2$2$101$16-11-2009_154634</OrderDescription>
    <DestinationFolder>/data/archive1/1/read/project/2/2/101/16-11-2009_154634</DestinationFolder>
    <RemoveXmlAfterFinish>false</RemoveXmlAfterFinish>
    <RemoveXmlAfterFailure>false</RemoveXmlAfterFailure>
    </restore>

Files are UTF-8 without an XML declaration (as in the manual; UTF-8 is XML's
default) and appear atomically, so an archiver watching the folder never reads half
an order.
"""
import re
from pathlib import Path
from xml.sax.saxutils import escape

from .fsutil import atomic_write_bytes
from .layout import Order

ARCHIVE_FLAGS = (("RemoveSource", "true"), ("RemoveFolder", "true"),
                 ("RemoveXmlAfterFinish", "true"), ("RemoveXmlAfterFailure", "false"))
RESTORE_FLAGS = (("RemoveXmlAfterFinish", "false"), ("RemoveXmlAfterFailure", "false"))

# Characters XML 1.0 cannot carry (controls, surrogates, U+FFFE/FFFF), plus tab, CR and
# LF, which parsers would turn into other whitespace: a folder cannot round-trip them.
_UNSAFE = re.compile("[\x00-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: str) -> str:
    value = str(value)
    bad = _UNSAFE.search(value)
    if bad:
        raise ValueError(f"{value!r} holds {bad.group()!r}, which an XML order cannot carry")
    return escape(value, {'"': "&quot;", "'": "&apos;"})


def _document(root: str, elements) -> str:
    lines = [f"<{root}>"]
    lines += [f"<{tag}>{_text(text)}</{tag}>" for tag, text in elements]
    lines.append(f"</{root}>")
    return "\n".join(lines) + "\n"


def archive_order_xml(order: Order) -> str:
    if not order.source_folder:
        raise ValueError("an archive order needs the source folder")
    return _document("archive", [("OrderDescription", order.description),
                                 ("SourceFolder", order.source_folder), *ARCHIVE_FLAGS])


def restore_order_xml(order: Order) -> str:
    if not order.destination_folder:
        raise ValueError("a restore order needs the destination folder")
    return _document("restore", [("OrderDescription", order.description),
                                 ("DestinationFolder", order.destination_folder),
                                 *RESTORE_FLAGS])


def order_filename(kind: str, location_id: int, order: Order) -> str:
    """'archive-1-project-2-2-101-16-11-2009_154634.xml': one name per order and
    location, so an XML folder can be shared and an order is never written twice."""
    if kind not in ("archive", "restore"):
        raise ValueError(f"order kind must be 'archive' or 'restore', not {kind!r}")
    return f"{kind}-{location_id}-{order.description.replace('$', '-')}.xml"


def write_order(folder: Path, filename: str, xml_text: str) -> Path:
    """Write an order atomically (temporary '.*.tmp' file, fsync, rename, fsync folder)."""
    path = Path(folder) / filename
    atomic_write_bytes(path, xml_text.encode("utf-8"))
    return path

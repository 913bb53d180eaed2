"""BagIt bags (RFC 8493), written and checked here, with no dependency: the public face.

A copy is a bag so that any BagIt tool can check it without this app. The work is split
by role, to keep each module small; this module re-exports their public names so callers
keep importing from `backends.bag`:

    bagformat.py   the format: paths, tags, manifests, read_bag, is_complete_bag, BagError
    bagwriter.py   BagWriter: the records file, the sorted runs, the tag files, the rename
    bagcheck.py    validate_bag: is a bag whole and do its files match its manifests

The three import only downwards (bagwriter and bagcheck from bagformat, never from here
or each other), so there is no import cycle. Module constants are re-exported for
reading only: a test that patches one must patch the module that reads it
(bagwriter.SORT_RUN), since patching it here would change nothing.
"""
from .bagcheck import validate_bag
from .bagformat import (BAGIT_VERSION, MANIFEST_ALGORITHM, BagContents, BagError,
                        decode_path, encode_path, format_tags, is_complete_bag,
                        parse_manifest, parse_tags, payload_files, read_bag)
from .bagwriter import RECORDS, SORT_RUN, BagWriter

__all__ = [
    "BAGIT_VERSION", "MANIFEST_ALGORITHM", "RECORDS", "SORT_RUN",
    "BagContents", "BagError", "BagWriter",
    "decode_path", "encode_path", "format_tags", "is_complete_bag", "parse_manifest",
    "parse_tags", "payload_files", "read_bag", "validate_bag",
]

"""Automated locations (manual 7.3): a disk cache emptied by a third-party archiver.

Copies go to write/<copy> and read/<copy>; then an <archive> XML order in the XML
folder tells the archiver to move write/<copy> to its archive. A restore whose copy
was purged from the read cache leaves a <restore> order for the archiver to bring it
back into read/<copy> (see xmlorders.py for both formats).
"""
import os
from datetime import datetime

from .bag import is_complete_bag
from .base import BadLocation, check_path_syntax, validate_mount
from .layout import Order
from .readcache import ReadCacheBackend
from .xmlorders import archive_order_xml, order_filename, restore_order_xml, write_order


class AutomatedBackend(ReadCacheBackend):
    type = "automated"
    noun = "archive cache"
    cache_wait_kind = "archiver"  # the restore order asks the archiver, not a person

    def __init__(self, config):
        super().__init__(config)
        if not config.xml_folder:
            raise BadLocation(f"automated location {config.name!r} needs an XML folder")
        self.xml_folder = check_path_syntax(config.xml_folder, "XML folder")

    def initialize(self):
        validate_mount(self.xml_folder, "XML folder")
        super().initialize()

    def order_path(self, kind: str, order):
        return os.path.join(self.xml_folder, order_filename(kind, self.config.id, order))

    def _write(self, kind, order, xml_text):
        # Checked at each write: the folder may be an unmounted share by now.
        validate_mount(self.xml_folder, "XML folder")
        return write_order(self.xml_folder, order_filename(kind, self.config.id, order),
                           xml_text)

    def publish(self, relpath, order):
        # Checked first: no point copying into the cache if the order cannot follow.
        validate_mount(self.xml_folder, "XML folder")
        super().publish(relpath, order)

    def _after_publish(self, order):
        """One archive order per copy. Not again once the archiver took the copy from
        write/ (it removes the order when done), nor while the order waits."""
        if os.path.lexists(self.order_path("archive", order)):
            return
        if not is_complete_bag(self.write_root / self._relpath(order.relpath)):
            return
        self._write("archive", order, archive_order_xml(order))

    def restore_source(self, relpath):
        path = super().restore_source(relpath)
        if path is not None:
            self._drop_restore_order(relpath)
        return path

    def _drop_restore_order(self, relpath):
        # The archiver keeps restore orders (RemoveXmlAfterFinish false); once the copy
        # is back the order is done, and a later restore needs a new one.
        try:
            order = Order.from_relpath(relpath)
        except ValueError:
            return  # not a copy path this app makes: it never had an order
        path = self.order_path("restore", order)
        if os.path.lexists(path):
            os.unlink(path)

    def _after_evict(self, relpath):
        self._drop_restore_order(relpath)

    def _ask_for(self, order, state):
        path = self.order_path("restore", order)
        if os.path.lexists(path):
            since = datetime.fromtimestamp(os.path.getmtime(path)).strftime("%Y-%m-%d %H:%M")
            arriving = " (it is arriving)" if state == "arriving" else ""
            return (f"restore order {path} was written {since}: waiting for the archiver to "
                    f"restore the copy into {order.destination_folder}{arriving}; if the "
                    "archiver failed, remove the order to have it written again")
        written = self._write("restore", order, restore_order_xml(order))
        return (f"wrote restore order {written}: waiting for the archiver to restore the "
                f"copy into {order.destination_folder}")


"""Tape locations (manual 7.2): a disk cache whose write/ the tape software backs up.

Copies go to write/<copy> (backed up to tape, then removed from write/ by the tape
software) and to read/<copy>, the read cache restores read from. A copy purged from
the cache must be restored from tape into read/<copy> by an administrator; the
restore waits until it is whole there.
"""
from .readcache import ReadCacheBackend


class TapeBackend(ReadCacheBackend):
    type = "tape"
    noun = "tape cache"

    def _ask_for(self, order, state):
        if state == "arriving":
            return (f"{order.destination_folder} is there but not complete yet: finish "
                    f"restoring {order.source_folder} from tape into it")
        return (f"restore {order.source_folder} from tape into {order.destination_folder} "
                f"({self.describe()})")

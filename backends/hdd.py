"""(Removable) HDD locations (manual 7.1).

Each disk is its own location with its own id; several disks may share one mount
point, and the <mount>/<id>/ directory tells which one is plugged in. Copies stay in
write/ and are restored from there (publish only checks the bag is there); read/ is
unused and nothing is ever evicted. When the disk holding a copy is not connected, a
restore waits for an administrator to connect it.
"""
from .base import Backend


class HddBackend(Backend):
    type = "hdd"
    noun = "archive disk"
    offline_state = "is not connected"
    connect_verb = "connect"

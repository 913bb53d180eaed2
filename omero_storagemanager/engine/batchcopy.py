"""Many verified copies at once: threads overlap the I/O, small files share one flush.

An fsync per file costs a journal commit per file: for a collection of 20 KiB files
that, not the copying, sets the pace. Here small files are written unsynced
(write_copy(durable=False)) until BATCH_FILES of them or BATCH_BYTES are waiting, made
durable together (make_durable: one syncfs of the target filesystem where the kernel
reports its errors), and only then read back from the disk and renamed (seal). The
invariant of copyfile.py holds for every file: nothing gets its final name before it
is durable and has been read back. Files of LARGE_FILE bytes or more are fsynced on
their own (their data, not the commit, dominates).

The caller gives two functions, run in the pool's threads:
    write(item, durable) -> PendingCopy, or None when there is nothing to seal
    seal(item, pending)  -> any result
and gets (item, result) pairs in the order they finish; result is None for items
whose write gave None. An exception in either stops the run: it is raised in the
caller's thread after the threads have stopped, and every temporary file written but
not sealed is removed.
"""
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, SimpleQueue

from .copyfile import PendingCopy, discard_copy, make_durable, reread_from_disk

LARGE_FILE = 4 << 20  # fsynced on its own
BATCH_FILES = 256  # small files made durable together
BATCH_BYTES = 64 << 20  # at most this much unsynced data waits for a flush
PREFETCH = 64  # small files whose reading is asked of the kernel ahead of their copy


def copy_batched(items, write, seal, size_of, workers=4, prefetch=None):
    """Copy `items` (any iterable, read lazily); yields (item, result) as they finish.

    prefetch(item): optional, asks the kernel to start reading a small item's source
    (copyfile.prefetch) PREFETCH items before a thread copies it. After each flush the
    batch's copies are likewise dropped from the cache and asked from the disk again
    (copyfile.reread_from_disk) before their read-back. Both run in one more thread:
    opening a cold file can wait on the disk, and this thread must not."""
    workers = max(1, workers)
    # Writes in flight: enough queued that the threads never wait for this thread
    # (which also records results); each holds no buffer until a thread runs it.
    window = workers * 8
    finished = SimpleQueue()  # futures, in the order they complete
    running = {}  # future -> (stage, item)
    writes = 0  # of them, writes
    unsynced = []  # (item, PendingCopy) written, waiting for a flush
    unsynced_bytes = 0
    source = iter(items)
    ahead = deque()  # items taken from `source`, their reading asked ahead
    exhausted = False

    with ThreadPoolExecutor(workers) as pool, ThreadPoolExecutor(1) as asker:
        def take():
            """The next item, keeping PREFETCH small ones asked ahead; None at the end."""
            while len(ahead) < PREFETCH:
                item = next(source, None)
                if item is None:
                    break
                if prefetch is not None and size_of(item) < LARGE_FILE:
                    asker.submit(prefetch, item)
                ahead.append(item)
            return ahead.popleft() if ahead else None

        def submit(stage, fn, *args):
            nonlocal writes
            future = pool.submit(fn, *args)
            running[future] = (stage, args[0], args[1] if stage == "seal" else None)
            writes += stage == "write"
            future.add_done_callback(finished.put)

        def reread(batch):
            for pending in batch:
                reread_from_disk(pending)

        def flush():
            nonlocal unsynced_bytes
            batch = list(unsynced)
            unsynced.clear()
            unsynced_bytes = 0
            try:
                make_durable([p for _, p in batch])
            except BaseException:
                for _, pending in batch:
                    discard_copy(pending)
                raise
            # Safe in any order: a read-back that starts before its file was asked
            # again drops the cached pages itself (PendingCopy.reread still False).
            asker.submit(reread, [p for _, p in batch])
            for item, pending in batch:
                submit("seal", seal, item, pending)

        try:
            while True:
                while not exhausted and writes < window:
                    item = take()
                    if item is None:
                        exhausted = True
                        break
                    submit("write", write, item, size_of(item) >= LARGE_FILE)
                if unsynced and (len(unsynced) >= BATCH_FILES or unsynced_bytes >= BATCH_BYTES
                                 or not writes):
                    flush()
                    continue
                if not running:
                    return
                future = finished.get()
                stage, item, _ = running.pop(future)
                writes -= stage == "write"
                result = future.result()
                if stage == "seal":
                    yield item, result
                elif result is None:
                    yield item, None
                elif result.durable:
                    submit("seal", seal, item, result)
                else:
                    unsynced.append((item, result))
                    unsynced_bytes += result.size
        finally:
            for future in running:
                future.cancel()
            for _, pending in unsynced:
                discard_copy(pending)
            unsynced.clear()
            pool.shutdown(wait=True)
            asker.shutdown(wait=True)
            # What we stopped looking at: written copies never sealed, and seals that
            # were cancelled before they ran, leave temporary files to remove.
            for future, (stage, _, pending) in running.items():
                if future.cancelled():
                    if pending is not None:
                        discard_copy(pending)
                elif stage == "write" and future.exception() is None \
                        and isinstance(future.result(), PendingCopy):
                    discard_copy(future.result())

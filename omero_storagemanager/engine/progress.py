"""Progress of long operations: a bar on a terminal, plain lines otherwise.

The engine calls start(total), advance(items, files, bytes) and done(); a job handle
(the jobs issue) implements the same three methods to record progress on its row.
"""
import sys
import time

import humanize


class NullProgress:
    def start(self, total):
        pass

    def advance(self, items=1, files=0, nbytes=0):
        pass

    def done(self):
        pass


class ConsoleProgress(NullProgress):
    """Collections, files, bytes, rate and time left.

    On a terminal one line redrawn at most ten times a second; elsewhere (logs, cron)
    a plain line every `interval` seconds and at the end.
    """

    def __init__(self, stream=None, label="collections", interval=5.0, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.label = label
        self.interval = 0.1 if self.tty else interval
        self.clock = clock
        self.total = self.items = self.files = self.nbytes = 0
        self.started = self.last = None

    def start(self, total):
        self.total = total
        self.started = self.last = self.clock()

    def advance(self, items=1, files=0, nbytes=0):
        self.items += items
        self.files += files
        self.nbytes += nbytes
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._show(final=False)

    def done(self):
        self._show(final=True)

    def line(self):
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.nbytes / elapsed
        fraction = self.items / self.total if self.total else 1.0
        left = (elapsed / fraction - elapsed) if fraction > 0 else None
        text = (f"{self.items}/{self.total} {self.label}, {self.files} files, "
                f"{humanize.naturalsize(self.nbytes, binary=True)}, "
                f"{humanize.naturalsize(rate, binary=True)}/s")
        if left is not None and self.items < self.total:
            text += f", {humanize.precisedelta(left, minimum_unit='seconds', format='%0.0f')} left"
        return text, fraction

    def _show(self, final):
        text, fraction = self.line()
        if self.tty:
            width = 24
            filled = int(width * min(fraction, 1.0))
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {text}\033[K" + ("\n" if final else ""))
        else:
            self.stream.write(("done: " if final else "") + text + "\n")
        self.stream.flush()

"""Progress output: a redrawn bar on a terminal, plain lines in logs."""
import io

from omero_storagemanager.engine.progress import ConsoleProgress


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bar_on_a_terminal_shows_counts_rate_and_time_left():
    out, clock = Terminal(), Clock()
    progress = ConsoleProgress(out, clock=clock)
    progress.start(4)
    clock.now += 2
    progress.advance(1, files=10, nbytes=4 * 1024**2)
    text = out.getvalue()
    assert text.startswith("\r[######------------------] 1/4 collections, 10 files, 4.0 MiB")
    assert "2.0 MiB/s" in text and "6 seconds left" in text
    clock.now += 6
    progress.advance(3, files=30, nbytes=12 * 1024**2)
    progress.done()
    assert out.getvalue().rstrip("\n").endswith("4/4 collections, 40 files, 16.0 MiB, 2.0 MiB/s\x1b[K")


def test_plain_lines_when_not_a_terminal():
    out, clock = io.StringIO(), Clock()
    progress = ConsoleProgress(out, interval=5, clock=clock)
    progress.start(10)
    for _ in range(10):
        clock.now += 1
        progress.advance(1, files=1, nbytes=1000)
    progress.done()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("5/10 collections") and lines[1].startswith("10/10 collections")
    assert lines[-1].startswith("done: 10/10 collections, 10 files")

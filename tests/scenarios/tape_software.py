"""The facility's tape software, as chapter 14 of the manual relies on it: nothing the
app does.

Once a day it backs up everything in the location's write/ folder to tape and, once that
is done, removes it from write/ (manual 7.2: "After the files are on tape, the files must
be removed from the write cache. This has to be handled by the tape software"). The
"tape" here is a folder outside the location, laid out as write/ was, so that an
administrator asked to "restore <mount>/<id>/write/<copy> from tape into
<mount>/<id>/read/<copy>" finds <tape>/<copy>.

Like a backup tool, it knows nothing of bags: it copies every file it finds, then removes
what it copied. It does not touch work in progress of the app (a folder whose name ends
in .partial); the story runs it at night, after the midnight archive has finished.
"""
import filecmp
import os
import shutil
from pathlib import Path


class TapeSoftware:
    def __init__(self, write_root, tape_root):
        self.write_root = Path(write_root)
        self.tape = Path(tape_root)
        self.tape.mkdir(parents=True, exist_ok=True)
        self.runs = []  # (when, [relative folders backed up])

    def backed_up(self):
        """The folders on tape, relative to write/ (and to the tape): each a copy."""
        return sorted(str(p.parent.relative_to(self.tape))
                      for p in self.tape.rglob("bagit.txt"))

    def run(self, when=None):
        """Back up write/ to tape, check it, then empty write/. Returns what it took."""
        taken = []
        for top, dirs, files in os.walk(self.write_root):
            dirs[:] = sorted(d for d in dirs if not d.endswith(".partial"))
            rel = Path(top).relative_to(self.write_root)
            for name in sorted(files):
                source, target = Path(top, name), self.tape / rel / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                if not filecmp.cmp(source, target, shallow=False):
                    raise AssertionError(f"the tape holds {target} differently from {source}")
                taken.append(source)
        for source in taken:  # only once everything is on tape
            source.unlink()
        folders = set()
        for source in taken:
            parent = source.parent
            while parent != self.write_root:
                folders.add(parent)
                parent = parent.parent
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
        bags = sorted({str(s.parent.relative_to(self.write_root)) for s in taken
                       if s.name == "bagit.txt"})
        self.runs.append((when, bags))
        return bags

    def restore(self, copy, read_root):
        """What the administrator does when asked: restore the copy's folder from tape
        into read/<copy>."""
        source, target = self.tape / copy, Path(read_root) / copy
        shutil.copytree(source, target)
        return target

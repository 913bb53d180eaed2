"""First contact (issue 22): every command line the README shows names a real program
and, where the test bed can run it, runs; `omero-storagemanager --help` answers before
the app is configured and says what to configure; a plain user's overview counts only
what they may see."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import omeroweb
import pytest

from omero_storagemanager.models import Collection, Location
from testbed.omerodir import write_config
from tests.api_support import data
from tests.test_api import API, world  # noqa: F401 (the fixture)
from tests.test_cli import run_cli

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Lines of the README's indented blocks that are not shell: SQL and printed JSON.
NOT_SHELL = re.compile(r"^(CREATE|GRANT|\{|\"|\[|\})")
PROGRAMS = {"omero", "omero-storagemanager", "python", "pip"}


def readme_command_lines():
    """Every line of an indented (code) block of README.md that is a shell command."""
    lines, previous_blank = [], True
    in_block = False
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("    ") and (in_block or previous_blank):
            in_block = True
            text = line.strip()
            if text and not NOT_SHELL.match(text):
                lines.append(re.sub(r"\s+#.*$", "", text))
        elif line.strip():
            in_block = False
        previous_blank = not line.strip()
    return lines


def program_of(words):
    """The program a command line runs, past its VAR=value assignments."""
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words = words[1:]
    return words[0]


COMMANDS = readme_command_lines()


def test_the_readme_shows_command_lines():
    assert len(COMMANDS) > 20, COMMANDS
    assert any(c.startswith("omero-storagemanager location add") for c in COMMANDS)


@pytest.mark.parametrize("line", COMMANDS)
def test_each_readme_command_names_a_real_program(line):
    program = program_of(shlex.split(line))
    if program.startswith("./") or program.startswith(".venv/"):
        path = REPO / program
        if program.startswith(".venv/"):
            path = BIN / Path(program).name
        assert path.exists() and os.access(path, os.X_OK), f"{program} is not executable"
        module = re.search(r"-m (\S+)", line)
        if module:
            assert (REPO / (module.group(1).replace(".", "/") + ".py")).exists(), line
    else:
        assert program in PROGRAMS, f"README runs {program!r}, which is not a program"
        if program != "python" and program != "pip":
            assert shutil.which(program, path=str(BIN)), f"{program} is not installed"


def test_inline_commands_use_the_console_script_name():
    """`storagemanager VERB` alone is the management command's name, not a program."""
    text = (REPO / "README.md").read_text()
    spans = re.findall(r"`([^`\n]+)`", text) + COMMANDS
    wrong = [s for s in spans if re.match(r"^storagemanager\s", s)]
    assert wrong == []


def _shell(line, omerodir, tmp_path):
    """Runs a README line with the virtualenv first on PATH and the test OMERODIR;
    placeholders the README spells for the reader (`.../omeroweb/`, a mount point of
    the reader's own) are given the test bed's values."""
    line = line.replace(".../omeroweb/", os.path.dirname(omeroweb.__file__) + "/")
    line = line.replace("/mnt/archive1", str(tmp_path / "archive1"))
    if line.startswith("omero ") and os.geteuid() == 0:
        # omero-py's CLI refuses to run as root (as the test bed's container does); the
        # same CLI, entered past that one check.
        line = (f"python -c 'import sys, omero.main as m; m.not_root = lambda: None; "
                f"sys.argv[0] = \"{BIN / 'omero'}\"; m.main()' " + line[len("omero "):])
    env = dict(os.environ, OMERODIR=str(omerodir), PYTHONPATH=str(REPO),
               PATH=f"{BIN}:{os.environ['PATH']}")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True,
                          timeout=300)


def test_readme_omero_config_lines_run_and_enable_the_app(tmp_path):
    """The installation's `omero config` lines, verbatim, on an empty OMERODIR: they
    run, and the console script then finds the app enabled."""
    config = [c for c in COMMANDS if c.startswith("omero config")]
    assert len(config) >= 9
    for line in config:
        proc = _shell(line, tmp_path, tmp_path)
        assert proc.returncode == 0, line + "\n" + proc.stderr
    shown = _shell("omero config get omero.web.apps", tmp_path, tmp_path).stdout
    assert "omero_storagemanager" in shown and "django_q" in shown
    proc = run_cli("--help", omerodir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "enables the app" in proc.stdout


def test_readme_migrate_location_add_and_import_check_run(omerodir, app_db, tmp_path):
    runnable = [c for c in COMMANDS if c.startswith(("python $(", "python .../omeroweb/"))
                and c.endswith("manage.py migrate")]
    runnable += [c for c in COMMANDS if c.startswith("omero-storagemanager location add")]
    runnable += [c for c in COMMANDS if c.startswith("python -c 'import omero_storagemanager")]
    assert len(runnable) >= 3, runnable
    (tmp_path / "archive1").mkdir()
    for line in runnable:
        proc = _shell(line, omerodir, tmp_path)
        assert proc.returncode == 0, line + "\n" + proc.stdout + proc.stderr
    location = Location.objects.get(name="Archive disk 1")
    assert location.current and location.type == "hdd"
    assert location.max_bytes == 8 * 10**12 or location.max_bytes == 8 * 2**40


# -- --help before the app is configured ---------------------------------------------

def test_help_without_omerodir_lists_verbs_and_what_to_configure():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: omero-storagemanager VERB" in proc.stdout
    assert re.search(r"^  location\s+add, list", proc.stdout, re.M), proc.stdout
    assert "OMERODIR is not set" in proc.stdout
    assert "omero config append omero.web.apps '\"omero_storagemanager\"'" in proc.stdout


def test_help_with_an_omerodir_not_enabling_the_app(tmp_path):
    write_config(tmp_path, {"omero.web.apps": []})
    proc = run_cli("--help", omerodir=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Unknown command" not in proc.stdout + proc.stderr
    assert "does not enable the app yet" in proc.stdout
    assert "check" in proc.stdout and "restore" in proc.stdout
    verb = run_cli("check", omerodir=tmp_path)
    assert verb.returncode == 2
    [line] = verb.stderr.strip().splitlines()
    assert "does not enable the app" in line and "--help" in line


# -- the overview counts what the user may see ---------------------------------------

def test_overview_counts_only_collections_the_user_may_see(world):  # noqa: F811
    ids, api, _ = world
    everyone = Collection.objects.filter(gone=False).count()
    admin = data(api("ingrid").get(API + "status/"))
    assert admin["collections"] == everyone
    for name in ("chloe", "farid"):
        from tests.test_api import _all_pages

        keys, _ = _all_pages(api(name), per_page=500)
        mine = data(api(name).get(API + "status/"))["collections"]
        assert mine == len(set(keys)) < everyone, name
    page = api("farid").get("/storagemanager/")
    assert page.status_code == 200
    assert b"Collections you may see" in page.content

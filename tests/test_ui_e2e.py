"""End to end, in a real headless Chromium (Selenium) against the demo stack: OMERO.web
on gunicorn with the app, a django-q2 cluster, PostgreSQL and a generated facility on
disk, started as `python -m testbed.demo` would be.

  1. alice (owner of Cell Biology) opens the Storage tab, sorts and filters the
     collections, selects her two Projects, archives them and watches the progress
     bars reach done, purges them, sees "purged" in the right-hand panel plugin (the
     real plugin template and scripts, hosted as the webclient hosts them), restores
     (one from the panel, one from the list) and finds every file back, byte for byte.
  2. chloe (a member) is refused the admin pages and a restore of alice's Project, and
     asks for the archive of her own Project.
  3. ingrid (an admin) adds an archive location, changes a schedule, sets a quota and
     approves chloe's request.

Each page is photographed into $TMPDIR/sm-screenshots/, or into docs/screenshots/ (the
README shows them) with SM_SCREENSHOTS=docs/screenshots. Needs Debian's
chromium and chromium-driver (scripts/system-deps.sh installs them); without them the
test fails, saying so.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest

from omero_storagemanager.gateway import STATE_NS
from testbed.pg import free_port

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the browser fixture fails, saying what to install
    webdriver = None

REPO = Path(__file__).resolve().parent.parent
# The README's pictures are refreshed only when asked (SM_SCREENSHOTS=docs/screenshots):
# a test run never rewrites tracked files.
SHOTS = (REPO / os.environ["SM_SCREENSHOTS"] if os.environ.get("SM_SCREENSHOTS")
         else Path(tempfile.gettempdir()) / "sm-screenshots")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--window-size=1360,860",
                  "--lang=en-GB")
WAIT = 90  # seconds a job or a page may take on a busy machine
ALICE_PROJECTS = ("Project:2", "Project:3")  # Zellkern Färbung, Mitochondria live imaging


class Demo:
    """`python -m testbed.demo` in its own process, stopped with SIGTERM (its own
    shutdown stops OMERO.web, the cluster and PostgreSQL)."""

    def __init__(self, base):
        self.base, self.port = Path(base), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        for key in ("DJANGO_SETTINGS_MODULE", "OMERODIR"):
            env.pop(key, None)
        self.log = open(self.base.parent / "demo.log", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "testbed.demo", "--port", str(self.port), "--dir",
             str(self.base)], env=env, cwd=str(REPO), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 240
        while "Ctrl-C stops everything" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("the demo did not start:\n" + self.output()[-3000:])
            time.sleep(0.3)
        self.pg_port = int(re.search(r"PostgreSQL on 127\.0\.0\.1:(\d+)", self.output()).group(1))
        self.truth = json.loads((self.base / "facility" / "truth.json").read_text())

    def output(self):
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def omero_db(self):
        return psycopg2.connect(host="127.0.0.1", port=self.pg_port, dbname="omero",
                                user="postgres")

    def app_db(self):
        return psycopg2.connect(host="127.0.0.1", port=self.pg_port, dbname="omeroweb",
                                user="postgres")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture(scope="module")
def demo():
    # Not under pytest's basetemp: another pytest run starting meanwhile resets its
    # parent to mode 0700, and the PostgreSQL user could no longer reach its data.
    base = Path(tempfile.mkdtemp(prefix="sm-e2e-"))
    demo = Demo(base / "demo")
    yield demo
    demo.stop()
    assert not (demo.base / "pg" / "data" / "postmaster.pid").exists(), "PostgreSQL left running"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    missing = [name for name in ("chromium", "chromedriver") if not shutil.which(name)]
    if missing:
        pytest.fail("the UI tests need Debian's chromium and chromium-driver: "
                    "apt-get install chromium chromium-driver (scripts/system-deps.sh does it); "
                    f"missing: {', '.join(missing)}")
    if webdriver is None:
        pytest.fail("the UI tests need selenium: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="sm-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


# -- helpers ----------------------------------------------------------------------------

def find(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css)


def finds(driver, css):
    return driver.find_elements(By.CSS_SELECTOR, css)


def text(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def wait(driver, condition, what, timeout=WAIT):
    def safe(d):
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False  # the list re-rendered under us: look again
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(safe)
    except TimeoutException:
        name = "failed-" + re.sub(r"[^a-z0-9]+", "-", what.lower())[:40]
        shot(driver, name, folder=Path(tempfile.gettempdir()))
        raise AssertionError(f"timed out waiting for: {what}") from None


def shot(driver, name, folder=SHOTS):
    folder.mkdir(parents=True, exist_ok=True)
    time.sleep(0.3)  # let bars finish their transition
    driver.save_screenshot(str(folder / f"{name}.png"))


def sign_in(driver, demo, user, then):
    driver.delete_all_cookies()
    driver.get(f"{demo.url}/demo/?url={then}")
    uid = next(uid for uid, u in demo.truth["users"].items() if u["omename"] == user)
    find(driver, f'input[name=user_id][value="{uid}"]').click()
    driver.find_element(By.ID, "sm-demo-sign-in").click()
    # The sign-in page's own URL carries `then` in its query (?url=...): wait for the
    # path itself, and for that page to finish loading, not for a substring.
    wait(driver, lambda d: (urlsplit(d.current_url).path == then
                            and d.execute_script("return document.readyState") == "complete"),
         f"{user} signed in")


def rows(driver):
    """(key, name, bytes, state) of the rows of the collections table."""
    found = []
    for tr in finds(driver, "#sm-collections tbody tr[data-key]"):
        cells = tr.find_elements(By.TAG_NAME, "td")
        size = int(cells[8].get_attribute("title").split()[0].replace(",", ""))
        badge = tr.find_element(By.CSS_SELECTOR, "[data-col=state] .sm-badge")
        state = badge.get_attribute("data-state")
        found.append((tr.get_attribute("data-key"), cells[1].text, size, state))
    return found


def loaded(driver):
    return finds(driver, "#sm-collections tbody tr[data-key]")


def job_states(driver, keys):
    states = {}
    for key in keys:
        bars = finds(driver, f'tr[data-key="{key}"] [role=progressbar]')
        states[key] = ((bars[0].get_attribute("data-state"),
                        bars[0].get_attribute("aria-valuenow")) if bars else None)
    return states


def run_action(driver, action, keys):
    """Select `keys`, press the action, confirm, and wait for the jobs' bars to be full."""
    driver.find_element(By.ID, "sm-clear-selection").click()
    for key in keys:
        find(driver, f'input[type=checkbox][data-key="{key}"]').click()
    button = find(driver, f'#sm-actions button[data-action="{action}"]')
    assert button.is_enabled(), f"{action} not offered for {keys}"
    button.click()
    driver.find_element(By.ID, "sm-confirm-yes").click()
    queued = re.compile(rf"{action} job (\d+) queued", re.I)  # not an earlier message
    wait(driver, lambda d: queued.search(text(d, "sm-messages")), f"{action} queued")
    job = int(queued.search(text(driver, "sm-messages")).group(1))
    seen = set()

    def done(d):
        states = job_states(d, keys)
        seen.update(s[0] for s in states.values() if s)
        return all(s is not None and s == ("done", "100") and f"#{job}" in
                   find(d, f'tr[data-key="{k}"] [data-col=job]').text
                   for k, s in states.items())
    wait(driver, done, f"{action} job {job} done for {keys}")
    return job, seen


def files_of(demo, keys):
    """Every file of the collections that exists on disk (in-place targets too)."""
    paths = set()
    for key in keys:
        paths.update(f["path"] for f in demo.truth["collections"][key]["files"] if not f["missing"])
    return sorted(paths)


def digests(paths):
    found = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                found[path] = hashlib.sha1(f.read()).hexdigest()
        except FileNotFoundError:
            found[path] = None
    return found


def api_call(driver, method, path, body=None):
    """Call the API from the page with the page's own client (cookies, CSRF token)."""
    return driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "SM.api(arguments[0], {method: arguments[1], body: arguments[2]})"
        "  .then(function (d) { done({status: 200, data: d}); })"
        "  .catch(function (e) { done({status: e.status, error: e.message}); });",
        path, method, body)


# -- the tests --------------------------------------------------------------------------

def test_owner_sorts_filters_archives_purges_and_restores(demo, browser):
    driver = browser
    sign_in(driver, demo, "alice", "/storagemanager/")
    wait(driver, lambda d: "in" in text(d, "sm-usage-body"), "usage shown")
    shot(driver, "overview")

    driver.get(demo.url + "/storagemanager/collections/")
    wait(driver, loaded, "collections listed")
    everything = rows(driver)
    assert {r[0] for r in everything} == {"Project:2", "Project:3", "Project:4", "Project:5",
                                          "Project:6", "Project:7"}  # her groups' projects
    assert [r[1] for r in everything] == sorted(r[1] for r in everything)  # by name at first
    # Sort on size, both ways.
    find(driver, 'th[data-sort="size"]').click()
    wait(driver, lambda d: find(d, 'th[data-sort="size"]').get_attribute(
        "aria-sort") == "ascending", "sorted by size")
    sizes = sorted(r[2] for r in everything)
    wait(driver, lambda d: [r[2] for r in rows(d)] == sizes, "ascending sizes")
    find(driver, 'th[data-sort="size"]').click()
    wait(driver, lambda d: [r[2] for r in rows(d)] == sizes[::-1], "descending sizes")
    assert "sort=-size" in driver.current_url
    # Quick filter, then a rule filter.
    driver.find_element(By.ID, "sm-q").send_keys("färbung")
    wait(driver, lambda d: {r[0] for r in rows(d)} == {"Project:2", "Project:4"}, "quick filter")
    driver.find_element(By.ID, "sm-q").clear()
    driver.find_element(By.ID, "sm-q").send_keys(" ")
    wait(driver, lambda d: len(rows(d)) == 6, "quick filter cleared")
    driver.find_element(By.ID, "sm-rule").send_keys("size above 5 MB")
    driver.find_element(By.ID, "sm-add-rule").click()
    wait(driver, lambda d: rows(d) and all(r[2] > 5 * 1024**2 for r in rows(d))
         and len(rows(d)) < 6, "rule filter")
    driver.find_element(By.ID, "sm-rule").send_keys("size above plenty")
    driver.find_element(By.ID, "sm-add-rule").click()
    wait(driver, lambda d: "not a size" in text(d, "sm-messages"), "bad rule refused")
    driver.find_element(By.ID, "sm-rule").clear()
    find(driver, "#sm-rules .sm-chip button").click()
    wait(driver, lambda d: len(rows(d)) == 6, "rule removed")

    before = digests(files_of(demo, ALICE_PROJECTS))
    assert before and all(before.values())
    job, seen = run_action(driver, "archive", ALICE_PROJECTS)
    wait(driver, lambda d: all(r[3] == "archived" for r in rows(d) if r[0] in ALICE_PROJECTS),
         "archived state")
    shot(driver, "collections")

    run_action(driver, "purge", ALICE_PROJECTS)
    wait(driver, lambda d: {r[0]: r[3] for r in rows(d) if r[0] in ALICE_PROJECTS} ==
         {"Project:2": "purged", "Project:3": "partially_purged"}, "purged states")
    after_purge = digests(before)
    gone = [p for p, digest in after_purge.items() if digest is None]
    assert gone, "purge removed no file"
    # Purged shows in OMERO itself: the state map annotation on the Project.
    with demo.omero_db() as conn, conn.cursor() as cur:
        cur.execute("SELECT m.name, m.value FROM projectannotationlink l"
                    " JOIN annotation a ON a.id = l.child"
                    " JOIN annotation_mapvalue m ON m.annotation_id = a.id"
                    " WHERE l.parent = 2 AND a.ns = %s", [STATE_NS])
        assert ("state", "purged") in cur.fetchall()
    shot(driver, "collections-purged")

    # The right-hand panel plugin, in the page that hosts the webclient's plugin scripts.
    driver.get(demo.url + "/demo/webclient/")
    find(driver, 'a[data-id="project-2"]').click()
    find(driver, 'a[href="#storage_tab"]').click()
    panel = '#storage_tab .sm-plugin-collection[data-key="Project:2"]'
    wait(driver, lambda d: finds(d, panel), "right panel loaded")
    box = find(driver, panel)
    assert box.find_element(By.CSS_SELECTOR, "h2 .sm-badge").get_attribute("data-state") == "purged"
    assert "restored" in box.find_element(By.CSS_SELECTOR, ".sm-purged-help").text
    assert "Demo archive disk" in box.find_element(By.CSS_SELECTOR, ".sm-copies").text
    assert box.find_element(By.CSS_SELECTOR, 'button[data-action="restore"]').is_displayed()
    shot(driver, "webclient-right-panel")
    # A Dataset of the Project: the panel names the Project it belongs to.
    find(driver, 'a[data-id="dataset-2"]').click()
    wait(driver, lambda d: finds(d, "#storage_tab .sm-note"), "dataset note")
    assert "Zellkern" in find(driver, "#storage_tab .sm-note").text
    # The center panel: per-dataset breakdown of the two selected Projects.
    Select(driver.find_element(By.ID, "source")).select_by_visible_text("Storage")
    find(driver, 'a[data-id="project-2"]').click()
    ActionChains(driver).key_down(Keys.CONTROL).click(
        find(driver, 'a[data-id="project-3"]')).key_up(Keys.CONTROL).perform()
    wait(driver, lambda d: len(finds(d, "#storage_center .sm-breakdown")) == 2,
         "center breakdown")
    datasets = find(driver, '#storage_center [data-key="Project:2"]').text
    assert "Tag 1" in datasets and "Tag 2" in datasets
    shot(driver, "webclient-center-panel")

    # Restore Project:2 from the panel: it polls while the job runs...
    Select(driver.find_element(By.ID, "source")).select_by_visible_text("Thumbnails")
    find(driver, 'a[data-id="project-2"]').click()
    find(driver, 'a[href="#storage_tab"]').click()
    wait(driver, lambda d: finds(d, panel + ' button[data-action="restore"]'),
         "restore button")
    find(driver, panel + ' button[data-action="restore"]').click()
    wait(driver, lambda d: find(d, "#storage_tab .sm-plugin").get_attribute(
        "data-polling") == "yes" or find(d, panel + " h2 .sm-badge")
        .get_attribute("data-state") == "archived", "panel follows the restore")
    wait(driver, lambda d: find(d, panel + " h2 .sm-badge")
         .get_attribute("data-state") == "archived", "restored, seen in the panel")
    shot(driver, "webclient-right-panel-restored")
    # ...and stops once the panel is emptied (another selection): no more calls for it.
    count = ("return performance.getEntriesByType('resource').filter(function (e) {"
             " return e.name.indexOf('/objects/project/2/') >= 0; }).length;")
    find(driver, 'a[data-id="project-4"]').click()
    calls = driver.execute_script(count)
    time.sleep(5)
    assert driver.execute_script(count) == calls, "the emptied panel kept polling"

    # Restore the other one from the list; every file is back, byte for byte.
    driver.get(demo.url + "/storagemanager/collections/")
    wait(driver, loaded, "collections listed")
    run_action(driver, "restore", ["Project:3"])
    assert digests(before) == before, "files differ after the restore"

    driver.get(demo.url + f"/storagemanager/jobs/?log={job}")
    wait(driver, lambda d: "verified copy" in text(d, "sm-log-text"), "job log")
    wait(driver, lambda d: len(finds(d, "#sm-history tr[data-state=done]")) >= 4,
         "jobs history")
    shot(driver, "jobs")
    driver.get(demo.url + "/storagemanager/statistics/")
    wait(driver, lambda d: finds(d, "#sm-chart-groups canvas"), "charts")
    assert finds(driver, "#sm-users .sm-over")  # over quota, in red
    shot(driver, "statistics")


def test_member_is_refused_admin_pages_and_anothers_restore(demo, browser):
    driver = browser
    sign_in(driver, demo, "chloe", "/storagemanager/")
    assert "Admin" not in find(driver, ".sm-subnav").text
    for page in ("admin/", "admin/locations/", "admin/tasks/", "admin/quotas/", "admin/requests/"):
        driver.get(f"{demo.url}/storagemanager/{page}")
        assert "Not allowed" in text(driver, "sm-refused"), page
    shot(driver, "refused")
    answer = api_call(driver, "GET", "admin/locations/")
    assert answer["status"] == 403
    # Alice's Project (Cell Biology): chloe may see it, but not restore it.
    driver.get(demo.url + "/storagemanager/collections/")
    wait(driver, loaded, "collections listed")
    find(driver, 'input[type=checkbox][data-key="Project:2"]').click()
    restore = find(driver, '#sm-actions button[data-action="restore"]')
    assert not restore.is_displayed() or not restore.is_enabled()
    answer = api_call(driver, "POST", "actions/",
                      {"action": "restore", "collections": ["Project:2"]})
    assert answer["status"] == 403 and "not yours" in answer["error"]
    answer = api_call(driver, "POST", "actions/",
                      {"action": "restore", "collections": ["Project:1"]})
    assert answer["status"] == 404  # eve's, in a private group: not even visible
    # Her own Project: she may only ask for its archive.
    driver.find_element(By.ID, "sm-clear-selection").click()
    find(driver, 'input[type=checkbox][data-key="Project:4"]').click()
    assert not find(driver, '#sm-actions button[data-action="archive"]').is_enabled()
    find(driver, '#sm-actions button[data-action="request_archive"]').click()
    driver.find_element(By.ID, "sm-confirm-yes").click()
    wait(driver, lambda d: "Request sent" in text(d, "sm-messages"), "request sent")
    wait(driver, lambda d: dict((r[0], r[3]) for r in rows(d)).get("Project:4") == "waiting",
         "waiting for approval")


def test_admin_adds_a_location_changes_a_schedule_and_approves(demo, browser):
    driver = browser
    sign_in(driver, demo, "ingrid", "/storagemanager/admin/")
    wait(driver, lambda d: d.find_elements(By.ID, "sm-pref-visibility"), "settings form")
    shot(driver, "admin-settings")

    driver.get(demo.url + "/storagemanager/admin/locations/")
    mount = demo.base.parent / "second-disk"
    mount.mkdir()
    driver.find_element(By.ID, "sm-loc-name").send_keys("Second disk")
    driver.find_element(By.ID, "sm-loc-mount").send_keys(str(mount))
    driver.find_element(By.ID, "sm-loc-max").send_keys("2 TB")
    driver.find_element(By.ID, "sm-loc-add").click()
    wait(driver, lambda d: "Second disk" in text(d, "sm-locations-table"),
         "location listed")
    with demo.app_db() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, max_bytes FROM storagemanager_location WHERE name = %s",
                    ["Second disk"])
        location_id, max_bytes = cur.fetchone()
    assert max_bytes == 2 * 1024**4
    assert all((mount / str(location_id) / sub).is_dir() for sub in ("read", "write"))
    shot(driver, "admin-locations")

    driver.get(demo.url + "/storagemanager/admin/tasks/")
    times = wait(driver, lambda d: d.find_elements(By.ID, "sm-times-scan"), "schedules")[0]
    times.clear()
    times.send_keys("02:30, 14:00")
    find(driver, 'tr[data-kind="scan"] button[data-do="save"]').click()
    wait(driver, lambda d: "scan schedule saved" in text(d, "sm-messages").lower(),
         "schedule saved")
    with demo.app_db() as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM django_q_schedule WHERE name LIKE 'storagemanager:scan@%%'"
                    " ORDER BY name")
        assert [r[0] for r in cur.fetchall()] == ["storagemanager:scan@02:30",
                                                  "storagemanager:scan@14:00"]
    shot(driver, "admin-schedules")

    driver.get(demo.url + "/storagemanager/admin/quotas/")
    wait(driver, lambda d: finds(d, "#sm-quota-who option"),
         "quota form")
    Select(driver.find_element(By.ID, "sm-quota-who")).select_by_visible_text(
        next(f"{u['omename']} (id {uid})" for uid, u in demo.truth["users"].items()
             if u["omename"] == "alice"))
    driver.find_element(By.ID, "sm-quota-size").send_keys("50 MB")
    find(driver, "#sm-quota-add button").click()
    wait(driver, lambda d: "50.0 MiB" in text(d, "sm-quota-exceptions"), "exception")
    shot(driver, "admin-quotas")

    driver.get(demo.url + "/storagemanager/admin/requests/")
    wait(driver, lambda d: finds(d, '#sm-pending button[data-do="approve"]'),
         "chloe's request")
    shot(driver, "admin-requests")
    find(driver, '#sm-pending button[data-do="approve"]').click()
    wait(driver, lambda d: "approved" in text(d, "sm-messages"), "approved")
    with demo.app_db() as conn, conn.cursor() as cur:
        cur.execute("SELECT j.kind, j.requested_by_name FROM storagemanager_request r"
                    " JOIN storagemanager_job j ON j.id = r.job_id WHERE r.state = 'approved'")
        assert cur.fetchall() == [("archive", "chloe")]

"""Persona stories in a real headless Chromium against the demo (issue 22), with
axe-core run on every page they show (0 serious or critical violations):

  (a) chloe finds her purged Project, asks for its restore, sees the request pending
      (the button off, saying why), an admin approves it, and she sees it done;
  (b) ingrid (an admin) plans "free 30% of OMERO's online data" with the planner, sees
      the date the projection moves to, queues it and watches the archive and the purge
      that follows it finish;
  (c) alice (owner of Cell Biology) reviews her group's usage, its history and quota.

Screenshots (collection page, planner, charts) go where tests/test_ui_e2e.py puts its
own: a temporary folder, or docs/screenshots with SM_SCREENSHOTS (scripts/screenshots.sh).
"""
import re

from selenium.webdriver.common.by import By

from tests.a11y import assert_accessible
from tests.test_ui_e2e import api_call, browser, demo, find, finds, shot  # noqa: F401
from tests.test_ui_e2e import sign_in as e2e_sign_in
from tests.test_ui_e2e import text, wait


def sign_in(driver, demo, user, then):  # noqa: F811
    """test_ui_e2e's sign-in, once the demo's sign-in form is there (on a loaded
    machine the page may come after its first request times out)."""
    for attempt in range(3):
        driver.get(f"{demo.url}/demo/?url={then}")
        if wait(driver, lambda d: d.execute_script("return document.readyState") == "complete",
                "sign-in page") and finds(driver, "input[name=user_id]"):
            break
    return e2e_sign_in(driver, demo, user, then)

PAGES = ("/storagemanager/", "/storagemanager/collections/", "/storagemanager/statistics/",
         "/storagemanager/jobs/", "/storagemanager/collection/Project:2/",
         "/storagemanager/admin/", "/storagemanager/admin/locations/",
         "/storagemanager/admin/quotas/", "/storagemanager/admin/tasks/",
         "/storagemanager/admin/requests/", "/storagemanager/admin/planner/")


def settle(driver):
    """Until the page's scripts have filled every "Loading…" placeholder."""
    wait(driver, lambda d: d.execute_script("return document.readyState") == "complete"
         and "Loading…" not in d.find_element(By.TAG_NAME, "main").text, "page loaded")


def job_done(demo, job_id):
    with demo.app_db() as conn, conn.cursor() as cur:
        cur.execute("SELECT state FROM storagemanager_job WHERE id = %s", [job_id])
        return cur.fetchone()[0]


def test_every_page_passes_axe_for_an_admin_and_a_user(demo, browser):  # noqa: F811
    driver = browser
    sign_in(driver, demo, "ingrid", "/storagemanager/")
    for path in PAGES:
        driver.get(demo.url + path)
        settle(driver)
        assert_accessible(driver, f"{path} (admin)")
    sign_in(driver, demo, "chloe", "/storagemanager/")
    for path in PAGES[:4] + ("/storagemanager/collection/Project:4/", "/storagemanager/admin/"):
        driver.get(demo.url + path)
        settle(driver)
        assert_accessible(driver, f"{path} (user)")


def _act_on_collection_page(driver, demo, key, action, confirm=False):
    driver.get(f"{demo.url}/storagemanager/collection/{key}/")
    button = wait(driver, lambda d: [b for b in finds(d, f'button[data-action="{action}"]')
                                     if b.is_enabled()], f"{action} offered on {key}")[0]
    button.click()
    if confirm:
        driver.find_element(By.ID, "sm-confirm-yes").click()
    queued = re.compile(r"Job (\d+) \(" + action + r"\) queued")
    wait(driver, lambda d: queued.search(text(d, "sm-messages")), f"{action} queued")
    job = int(queued.search(text(driver, "sm-messages")).group(1))
    wait(driver, lambda d: job_done(demo, job) == "done", f"{action} job {job} done",
         timeout=240)
    return job


def test_a_user_requests_the_restore_of_her_purged_project(demo, browser):  # noqa: F811
    driver = browser
    key = "Project:4"  # chloe's, in Cell Biology
    sign_in(driver, demo, "ingrid", f"/storagemanager/collection/{key}/")
    _act_on_collection_page(driver, demo, key, "archive")
    _act_on_collection_page(driver, demo, key, "purge", confirm=True)

    sign_in(driver, demo, "chloe", "/storagemanager/collections/")
    wait(driver, lambda d: finds(d, f'tr[data-key="{key}"] .sm-badge[data-state="purged"]'),
         "her Project listed as purged")
    find(driver, f'tr[data-key="{key}"] .sm-name a').click()
    wait(driver, lambda d: "moved to the archive" in text(d, "sm-collection-help"),
         "the collection page says how to get it back")
    settle(driver)
    assert_accessible(driver, "collection page, purged")
    find(driver, 'button[data-action="request_restore"]').click()
    wait(driver, lambda d: "Request sent" in text(d, "sm-messages"), "request sent")
    wait(driver, lambda d: finds(d, '#sm-requests-body tr[data-fate="pending"]'), "pending")
    button = wait(driver, lambda d: [b for b in finds(d, 'button[data-action="request_restore"]')
                                     if not b.is_enabled()], "request button off")[0]
    assert "waiting for approval" in button.get_attribute("title")
    assert "waiting for approval" in text(driver, "sm-action-reasons")
    assert "e-mail" not in text(driver, "sm-messages")  # no mail server in the demo
    shot(driver, "collection-page")

    sign_in(driver, demo, "ingrid", "/storagemanager/")
    assert "1 pending request" in find(driver, "#sm-pending-count").text
    find(driver, "#sm-pending-count").click()
    approve = wait(driver, lambda d: finds(d, '#sm-pending button[data-do="approve"]'),
                   "the request to decide")[0]
    settle(driver)
    assert_accessible(driver, "requests page")
    approve.click()
    wait(driver, lambda d: "approved: job queued" in text(d, "sm-messages"), "approved")

    sign_in(driver, demo, "chloe", "/storagemanager/")
    wait(driver, lambda d: finds(d, '#sm-my-requests-body tr[data-fate="done"]'),
         "her request done under My requests", timeout=240)
    assert "done" in find(driver, "#sm-my-requests-body").text
    assert_accessible(driver, "overview with My requests")
    shot(driver, "my-requests")
    driver.get(f"{demo.url}/storagemanager/collection/{key}/")
    # Back on the primary storage, its verified copy kept: archived, no longer purged.
    wait(driver, lambda d: finds(d, '#sm-collection-state .sm-badge[data-state="archived"]'),
         "back from the archive")
    assert not finds(driver, '#sm-collection-help .sm-message')
    wait(driver, lambda d: "restore job" in text(d, "sm-history-body"), "history of states")


def test_an_admin_plans_to_free_30_percent_and_queues_it(demo, browser):  # noqa: F811
    driver = browser
    with demo.app_db() as conn, conn.cursor() as cur:
        cur.execute("SELECT bytes, shared_bytes FROM storagemanager_collection "
                    "WHERE NOT gone AND state <> 'purged' AND files > 0 ORDER BY bytes DESC")
        sizes = cur.fetchall()
        cur.execute("SELECT coalesce(sum(bytes), 0) FROM storagemanager_collection "
                    "WHERE NOT gone AND state <> 'purged'")
        online = int(cur.fetchone()[0])
    # The smallest "size above N" whose matches free 30% of the online data.
    freed, threshold = 0, None
    for nbytes, shared in sizes:
        freed += nbytes - min(shared, nbytes)
        threshold = nbytes - 1
        if freed >= 0.3 * online:
            break
    assert freed >= 0.3 * online, "the demo facility cannot free 30% by size alone"
    sign_in(driver, demo, "ingrid", "/storagemanager/admin/planner/")
    rules = driver.find_element(By.ID, "sm-plan-rules")
    rules.clear()
    rules.send_keys(f"size above {threshold}")
    queue = driver.find_element(By.ID, "sm-plan-queue")
    assert not queue.is_enabled() and queue.get_attribute("title")
    driver.find_element(By.ID, "sm-plan-preview").click()
    freed_box = wait(driver, lambda d: finds(d, "#sm-plan-freed"), "plan shown")[0]
    fraction = float(freed_box.get_attribute("data-fraction"))
    assert fraction >= 0.3, freed_box.text
    assert "% of OMERO's online data" in freed_box.text
    dates = text(driver, "sm-plan-dates")
    assert "today's projection:" in dates and "after this plan:" in dates
    assert "still needed" in text(driver, "sm-plan-copies")
    keys = [tr.get_attribute("data-key") for tr in finds(driver, "#sm-plan-table tbody tr")]
    assert keys
    assert_accessible(driver, "planner with a plan")
    shot(driver, "planner")
    queue = wait(driver, lambda d: [b for b in finds(d, "#sm-plan-queue") if b.is_enabled()],
                 "queue offered")[0]
    queue.click()
    wait(driver, lambda d: "Queued:" in text(d, "sm-messages"), "queued")
    message = text(driver, "sm-messages")
    [archive] = [int(n) for n in re.findall(r"archive job (\d+)", message)] or [None]
    # Watch it on the Jobs page: the archive, then the purge it queues, both done.
    driver.get(demo.url + "/storagemanager/jobs/")
    if archive is not None:
        wait(driver, lambda d: job_done(demo, archive) == "done", "planned archive done",
             timeout=300)
    answer = api_call(driver, "GET", "collections/", None)
    assert answer["status"] == 200
    wait(driver, lambda d: all(
        api_call(d, "GET", f"collections/{k}/", None)["data"]["stored_state"] == "purged"
        for k in keys), "every planned collection purged", timeout=300)
    settle(driver)
    assert_accessible(driver, "jobs page after the plan")


def test_a_group_owner_reviews_usage_history_and_quota(demo, browser):  # noqa: F811
    driver = browser
    sign_in(driver, demo, "alice", "/storagemanager/statistics/")
    wait(driver, lambda d: finds(d, "#sm-chart-history canvas"), "usage history chart")
    legend = find(driver, "#sm-chart-history .u-legend").text
    assert "Cell Biology" in legend
    assert not finds(driver, "#sm-chart-primary")  # the primary storage is for admins
    row = wait(driver, lambda d: [r for r in finds(d, "#sm-groups tbody tr")
                                  if "Cell Biology" in r.text], "her group's row")[0]
    cells = row.find_elements(By.TAG_NAME, "td")
    assert cells[4].text.endswith("MiB")  # the demo's group quota: 32 MiB
    assert re.search(r"\d+%", cells[5].text)
    wait(driver, lambda d: finds(d, "#sm-chart-groups canvas"), "usage by group chart")
    settle(driver)
    assert_accessible(driver, "statistics (group owner)")
    shot(driver, "statistics-charts")


def test_collections_are_sorted_and_selected_by_keyboard(demo, browser):  # noqa: F811
    from selenium.webdriver.common.keys import Keys

    driver = browser
    sign_in(driver, demo, "alice", "/storagemanager/collections/")
    wait(driver, lambda d: finds(d, "#sm-collections tbody tr[data-key]"), "listed")
    header = find(driver, 'th[data-sort="size"]')
    header.send_keys(Keys.ENTER)
    wait(driver, lambda d: find(d, 'th[data-sort="size"]').get_attribute("aria-sort")
         == "ascending", "sorted by keyboard")
    # Tab from the page's top reaches every enabled control of the toolbar and the rows.
    reached, active = set(), None
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    for _ in range(80):
        active = driver.switch_to.active_element
        reached.add(active.get_attribute("id") or active.get_attribute("data-key")
                    or active.get_attribute("data-sort") or active.tag_name)
        active.send_keys(Keys.TAB)
    assert {"sm-q", "sm-rule", "sm-add-rule", "sm-select-page", "name", "size"} <= reached
    assert any(r and r.startswith("Project:") for r in reached)

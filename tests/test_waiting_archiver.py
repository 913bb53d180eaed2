"""A restore waiting for an automated archive's software asks nobody (issue 20, chapter 15).

An automated location's restore order is the question, put to the archiver (DAX FFA),
which answers it by itself: the manual's chapter 15 has "both the archiving and
restoring ... fully automated", with no e-mail, where chapter 14's tape asks the
administrator by e-mail. So the wait starts without a question e-mail and ends
without a "no longer waiting" one; only if the archiver has not answered within the
reminder interval are the admins told (then at that interval), and then also when it
ends. A tape's wait still asks a person at once. Real SMTP server (aiosmtpd).
"""
import time
from datetime import datetime, timedelta, timezone

import pytest
from django.test import override_settings

from omero_storagemanager import preferences, settings
from omero_storagemanager.engine.locations import add_location
from omero_storagemanager.engine.restore import RestoreWaiting, wait_reason
from omero_storagemanager.models import Job, Location
from omero_storagemanager.tasks import waiting
from tests.test_jobs import Mailbox

NOW = datetime(2027, 3, 1, 8, 0, tzinfo=timezone.utc)
DAY = timedelta(seconds=settings.WAIT_REMINDER)


@pytest.fixture
def mailbox(app_db):
    box = Mailbox()
    preferences.set_many({"admin_emails": ["storage-admin@example.org"]})
    with override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=box.port,
                           SERVER_EMAIL="omero@example.org"):
        yield box
    box.stop()


def subjects(box, settle=0.5):
    time.sleep(settle)  # aiosmtpd hands messages over in its own thread
    return [next(line for line in m[1].splitlines() if line.startswith("Subject:"))
            for m in box.messages]


def waiting_restore(location, reason_text):
    backend = location.backend()
    reason = wait_reason(backend, location, reason_text)
    job = Job.objects.create(kind="restore", state=Job.RUNNING, attempts=1)

    def finish(job, state, **fields):
        Job.objects.filter(pk=job.pk).update(state=state, **fields)

    waiting.enter(job, RestoreWaiting([reason]), finish, now=NOW)
    job.refresh_from_db()
    return job, reason


def test_an_automated_restore_order_asks_nobody_until_the_archiver_is_late(
        mailbox, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "xml").mkdir()
    location = add_location("BluRay Archive", Location.AUTOMATED, str(tmp_path / "cache"),
                            2**30, purge_watermark=80, purge_enabled=True,
                            xml_folder=str(tmp_path / "xml"))
    job, reason = waiting_restore(location, "wrote restore order /x/restore-1.xml")
    assert reason.kind == job.wait_kind == "archiver"
    assert job.state == Job.WAITING and job.attempts == 0 and job.wait_since == NOW
    assert subjects(mailbox) == []  # the XML order was the question

    # Answered within the interval (hours, as a jukebox does): nothing to tell anyone.
    assert waiting.remind(NOW + DAY / 2) == []
    assert waiting.leave(job)[1] is None

    # Not answered for days (a disc that cannot be read): a reminder per interval.
    sent = [k for k in range(1, 13) if waiting.remind(NOW + DAY * k / 4)]
    assert sent == [4, 8, 12]
    assert subjects(mailbox) == [
        "Subject: [OMERO storage] reminder: restore of all still waiting"] * 3
    job.refresh_from_db()
    cleared, ended = waiting.leave(job)
    assert ended == {"since": NOW.isoformat(), "kind": "archiver",
                     "seconds": ended["seconds"]}  # then its end is told too
    assert cleared["wait_kind"] == ""


def test_a_tape_restore_still_asks_the_admin_at_once(mailbox, tmp_path):
    location = add_location("Tape", Location.TAPE, str(tmp_path), 2**30,
                            purge_watermark=80, purge_enabled=True)
    job, reason = waiting_restore(location, "restore /t/1/write/x from tape into /t/1/read/x")
    assert reason.kind == job.wait_kind == "cache"
    assert subjects(mailbox) == ["Subject: [OMERO storage] restore of all is waiting"]
    assert waiting.leave(job)[1]["kind"] == "cache"

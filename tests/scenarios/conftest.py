"""Fixtures the chapter stories share."""
import pytest


@pytest.fixture(scope="module")
def mailbox():
    """A real SMTP server (aiosmtpd) receiving what the app sends."""
    # Imported here: a conftest is read before the test bed has set up OMERO.web.
    from tests.test_jobs import Mailbox

    box = Mailbox()
    yield box
    box.stop()

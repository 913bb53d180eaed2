"""A purge watermark of 0 says "purging is not used" (manual chapter 13: removable USB
disks are never purged). Found by the chapter's story (tests/scenarios/test_usb_drives.py):
the app refused the manual's own settings."""
import pytest

from omero_storagemanager.backends.base import LocationError
from omero_storagemanager.engine.locations import add_location
from omero_storagemanager.models import Location
from tests.api_support import Api, data, point_app_at, standin_middleware, user_ids

API = "/storagemanager/api/v1/"


def test_watermark_zero_is_accepted_only_with_purging_off():
    from omero_storagemanager.engine.locations import check_watermark

    check_watermark(0, False)
    check_watermark(100, True)
    for watermark, enabled in ((0, True), (-1, False), (101, False), (True, False), (5.5, False)):
        with pytest.raises(LocationError):
            check_watermark(watermark, enabled)


def test_the_manuals_usb_drive_settings_are_accepted_by_the_api(facility, app_db, tmp_path,
                                                                monkeypatch):
    point_app_at(facility, monkeypatch, tmp_path)
    admin_id = user_ids(facility)["ingrid"]
    mount = tmp_path / "archive"
    mount.mkdir()
    with standin_middleware():
        admin = Api(admin_id)
        made = admin.post(f"{API}admin/locations/", {
            "name": "Drive-1", "type": "hdd", "mount": str(mount), "max_bytes": "1 TB",
            "purge_watermark": 0, "purge_enabled": False, "current": True})
        assert made.status_code == 201, made.content
        location = data(made)["location"]
        assert (location["purge_watermark"], location["purge_enabled"]) == (0, False)
        edit = f"{API}admin/locations/{location['id']}/"
        refused = admin.post(edit, {"purge_enabled": True})  # purging down to nothing
        assert refused.status_code == 400 and "watermark" in data(refused)["error"]
        assert not Location.objects.get(pk=location["id"]).purge_enabled
        assert admin.post(edit, {"purge_enabled": True, "purge_watermark": 80}).status_code == 200
        assert admin.post(edit, {"purge_watermark": 0}).status_code == 400


def test_the_engine_refuses_watermark_zero_with_purging_on(app_db, tmp_path):
    with pytest.raises(LocationError, match="watermark"):
        add_location("Tape", "hdd", str(tmp_path), 10**9, purge_watermark=0,
                     purge_enabled=True)
    assert not Location.objects.exists()

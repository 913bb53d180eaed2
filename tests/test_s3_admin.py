"""S3 locations are created and edited from the admin API (the admin page's calls) and
the command line like every other kind, against the real S3 server of the test bed;
no secret is ever in an answer or on the command line's output."""
import os
import subprocess
import sys

from omero_storagemanager import settings
from omero_storagemanager.backends.s3 import MARKER_NAME
from omero_storagemanager.models import Location
from tests.api_support import data
from tests.test_api import API, world  # noqa: F401 (the API tests' world fixture)
from tests.test_cli import CLI, REPO


def test_admin_api_adds_and_edits_an_s3_location(world, s3_server, s3_bucket,  # noqa: F811
                                                 monkeypatch, tmp_path):
    ids, api, _ = world
    admin = api("ingrid")
    monkeypatch.setattr(settings, "S3_CREDENTIALS", {"lab": {
        "access_key_id": s3_server.access_key, "secret_access_key": s3_server.secret_key}})
    staging = tmp_path / "staging"
    staging.mkdir()
    body = {"name": "Bucket", "type": "s3", "mount": str(staging), "max_bytes": "10 TB",
            "s3": {"bucket": s3_bucket, "endpoint_url": s3_server.endpoint,
                   "region": "us-east-1", "prefix": "omero", "addressing_style": "path",
                   "credentials": "config:lab"}}
    added = admin.post(API + "admin/locations/", body)
    assert added.status_code == 201, added.content
    location = Location.objects.get(name="Bucket")
    assert location.options["bucket"] == s3_bucket
    marker = s3_server.client().get_object(Bucket=s3_bucket,
                                           Key=f"omero/{location.pk}/{MARKER_NAME}")
    assert marker["Body"].read().decode().strip() == location.marker
    listed = data(admin.get(API + "admin/locations/"))["locations"]
    row = next(r for r in listed if r["name"] == "Bucket")
    assert row["online"] is True and row["s3"]["bucket"] == s3_bucket
    assert s3_server.secret_key not in added.content.decode()
    assert s3_server.secret_key not in admin.get(API + "admin/locations/").content.decode()
    for s3, text in [({"bucket": "Bad_Name"}, "not valid"),
                     ({"credentials": "AKIAABCDEF:secret"}, "never a key"),
                     ({"part_size": 1024}, "5 MiB"),
                     ({"storage_class": "FLOPPY"}, "storage class"),
                     ({"colour": "red"}, "unknown S3 setting")]:
        answer = admin.post(API + "admin/locations/", {**body, "name": "x", "s3": {
            **body["s3"], **s3}})
        assert answer.status_code == 400 and text in data(answer)["error"], answer.content
    edit = f"{API}admin/locations/{location.pk}/"
    saved = admin.post(edit, {"s3": {"storage_class": "STANDARD_IA", "concurrency": 8}})
    assert saved.status_code == 200, saved.content
    location.refresh_from_db()
    assert location.options["storage_class"] == "STANDARD_IA"
    assert location.options["concurrency"] == 8
    # Another prefix holds no marker of this location: refused, nothing changed.
    moved = admin.post(edit, {"s3": {"prefix": "elsewhere"}})
    assert moved.status_code == 400 and "no marker" in data(moved)["error"], moved.content
    location.refresh_from_db()
    assert location.options["prefix"] == "omero"
    assert not Location.objects.filter(name="x").exists()


def test_cli_adds_an_s3_location_with_the_aws_credential_chain(omerodir, s3_server,
                                                               s3_bucket, tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), OMERODIR=str(omerodir),
               AWS_ACCESS_KEY_ID=s3_server.access_key,
               AWS_SECRET_ACCESS_KEY=s3_server.secret_key)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    assert CLI, "console script omero-storagemanager not installed: run scripts/dev-env.sh"
    proc = subprocess.run(
        [CLI, "location", "add", "CLI bucket", "--type", "s3", "--mount", str(staging),
         "--max-size", "5TB", "--bucket", s3_bucket, "--endpoint-url", s3_server.endpoint,
         "--region", "us-east-1", "--prefix", "cli", "--addressing-style", "path",
         "--part-size", "8MiB", "--concurrency", "2"],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"s3://{s3_bucket}/cli at {s3_server.endpoint}" in proc.stdout
    assert s3_server.secret_key not in proc.stdout + proc.stderr
    location = Location.objects.get(name="CLI bucket")
    assert location.options["part_size"] == 8 << 20 and location.options["concurrency"] == 2
    wrong = dict(env, AWS_SECRET_ACCESS_KEY="not-the-secret")
    proc = subprocess.run(
        [CLI, "location", "add", "Refused", "--type", "s3", "--mount", str(staging),
         "--max-size", "5TB", "--bucket", s3_bucket, "--endpoint-url", s3_server.endpoint,
         "--region", "us-east-1", "--prefix", "cli2", "--addressing-style", "path"],
        env=wrong, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    error = proc.stderr.strip().splitlines()[-1]
    assert "refused the credentials" in error, proc.stderr
    assert "not-the-secret" not in proc.stdout + proc.stderr
    assert not Location.objects.filter(name="Refused").exists()


def test_a_malformed_s3_secret_setting_stops_start_up_without_printing_it(tmp_path):
    from testbed.omerodir import write_config

    write_config(tmp_path, {"omero.web.apps": ["omero_storagemanager"],
                            "omero.web.storagemanager.s3_credentials":
                                '{"lab": {"access_key_id": "AKIDSHOWNNOWHERE"}}'})
    env = dict(os.environ, OMERODIR=str(tmp_path), DJANGO_SETTINGS_MODULE="omeroweb.settings",
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "omero.web.storagemanager.s3_credentials" in proc.stderr
    assert "AKIDSHOWNNOWHERE" not in proc.stdout + proc.stderr

"""S3 archive locations (issue 23): Location.options holds an s3 location's settings
(endpoint, region, bucket, prefix, ...; no secret), S3Object what the server said when
it stored each copied file (ETag, checksum, version id)."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("storagemanager", "0008_primary_identity")]
    operations = [
        migrations.AddField("location", "options", models.JSONField(blank=True, default=dict)),
        migrations.AlterField("location", "type", models.CharField(
            max_length=10, choices=[
                ("hdd", "HDD (removable or fixed)"), ("tape", "Tape (with read cache)"),
                ("automated", "Automated (XML orders)"),
                ("symlink", "Online (symlinks into the archive)"),
                ("s3", "S3 object storage (bucket)")])),
        migrations.CreateModel(
            name="S3Object",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                           serialize=False, verbose_name="ID")),
                ("etag", models.CharField(max_length=128)),
                ("checksum", models.CharField(blank=True, default="", max_length=128)),
                ("version_id", models.CharField(blank=True, default="", max_length=1024)),
                ("copy_file", models.OneToOneField(
                    on_delete=django.db.models.deletion.CASCADE, related_name="s3_object",
                    to="storagemanager.copyfile")),
            ],
        ),
    ]

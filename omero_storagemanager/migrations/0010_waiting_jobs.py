"""Issue 20: what a waiting job waits for, since when, the last e-mail about it; the
copy state "missing" (a rescan did not find the bag); what a tape or automated
location's write/ and read/ hold now."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("storagemanager", "0009_s3_location")]
    operations = [
        migrations.AddField("job", "wait_kind",
                            models.CharField(blank=True, default="", max_length=16)),
        migrations.AddField("job", "wait_public", models.TextField(blank=True, default="")),
        migrations.AddField("job", "wait_since", models.DateTimeField(null=True)),
        migrations.AddField("job", "wait_reminded", models.DateTimeField(null=True)),
        migrations.AddField("location", "write_bytes", models.BigIntegerField(default=0)),
        migrations.AddField("location", "read_bytes", models.BigIntegerField(default=0)),
        migrations.AddField("location", "medium_only_bytes", models.BigIntegerField(default=0)),
        migrations.AddField("location", "medium_only_copies", models.IntegerField(default=0)),
        migrations.AddField("location", "measured_at", models.DateTimeField(null=True)),
        migrations.AlterField("copy", "state", models.CharField(
            choices=[("writing", "writing"), ("verified", "verified"),
                     ("failed_audit", "failed audit"), ("evicted", "evicted from read cache"),
                     ("missing", "missing from the location")],
            default="writing", max_length=12)),
    ]

"""Waiting is a state (issue 20): what a job waits for, since when, the last e-mail."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("storagemanager", "0008_primary_identity")]
    operations = [
        migrations.AddField("job", "wait_kind",
                            models.CharField(blank=True, default="", max_length=16)),
        migrations.AddField("job", "wait_public", models.TextField(blank=True, default="")),
        migrations.AddField("job", "wait_since", models.DateTimeField(null=True)),
        migrations.AddField("job", "wait_reminded", models.DateTimeField(null=True)),
    ]

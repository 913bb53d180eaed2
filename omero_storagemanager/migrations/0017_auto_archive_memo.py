"""Collection.auto_archive_memo: what the automatic archive saw when a collection's plan
last found nothing to copy (tasks/policy.py)."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("storagemanager", "0016_facility_scale")]

    operations = [
        migrations.AddField(model_name="collection", name="auto_archive_memo",
                            field=models.CharField(blank=True, default="", max_length=40)),
    ]

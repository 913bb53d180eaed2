"""The incremental catalogue (issue 24): CatalogCursor, where it stopped reading OMERO's
eventlog, and its schedule: every few minutes (settings.CATALOG_REFRESH_MINUTES at the
time of the migration; the admin page's django-q2 schedule edits it afterwards)."""
from django.db import migrations, models

SCHEDULE = "storagemanager:catalog_refresh"


def install(apps, schema_editor):
    from datetime import timedelta

    from django.utils import timezone

    from omero_storagemanager import settings

    minutes = settings.CATALOG_REFRESH_MINUTES
    # The first run one period after the migration, not at once: a cluster started
    # right after migrating has other work first (and tests their own jobs).
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=SCHEDULE,
        defaults={"func": "omero_storagemanager.tasks.schedules.refresh_catalog",
                  "schedule_type": "I", "minutes": minutes, "repeats": -1,
                  "next_run": timezone.now() + timedelta(minutes=minutes)})


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("storagemanager", "0011_request_lifecycle_usage"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [
        migrations.CreateModel(
            name="CatalogCursor",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("last_eventlog_id", models.BigIntegerField(null=True)),
                ("pending", models.JSONField(default=list)),
                ("deletions", models.JSONField(default=dict)),
                ("mode", models.CharField(blank=True, default="", max_length=12)),
                ("reason", models.TextField(blank=True, default="")),
                ("updated", models.DateTimeField(null=True)),
            ],
        ),
        migrations.RunPython(install, uninstall),
    ]

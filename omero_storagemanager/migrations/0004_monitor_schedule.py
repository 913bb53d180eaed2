"""Install the monitor schedule (tasks/monitor.py): every minute, django-q2's scheduler
resumes jobs of dead workers and dispatches waiting and queued jobs."""
from django.db import migrations


def install(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="storagemanager:monitor",
        defaults={"func": "omero_storagemanager.tasks.monitor.monitor",
                  "schedule_type": "I", "minutes": 1, "repeats": -1})


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="storagemanager:monitor").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("storagemanager", "0003_job_control"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(install, uninstall)]

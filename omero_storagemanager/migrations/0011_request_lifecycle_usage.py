# Issue 22: a requester may withdraw a pending request; usage is recorded daily for the
# capacity charts and projection (with its daily schedule).
from django.db import migrations, models

# Not "storagemanager:<kind>@HH:MM": those are the admin-editable job schedules.
SCHEDULE = "storagemanager-usage-record"


def install(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE,
        defaults={"func": "omero_storagemanager.tasks.capacity.record_today",
                  "schedule_type": "H", "repeats": -1})


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('storagemanager', '0010_waiting_jobs'),
        ('django_q', '0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more'),
    ]

    operations = [
        migrations.AlterField(
            model_name='request',
            name='state',
            field=models.CharField(choices=[('pending', 'pending'), ('approved', 'approved'), ('declined', 'declined'), ('withdrawn', 'withdrawn')], default='pending', max_length=9),
        ),
        migrations.CreateModel(
            name='UsageRecord',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('scope', models.CharField(choices=[('primary', 'primary'), ('group', 'group'), ('user', 'user'), ('location', 'location')], max_length=8)),
                ('subject', models.BigIntegerField(default=0)),
                ('name', models.CharField(blank=True, default='', max_length=255)),
                ('bytes', models.BigIntegerField(default=0)),
                ('files', models.BigIntegerField(default=0)),
                ('limit_bytes', models.BigIntegerField(null=True)),
            ],
            options={
                'indexes': [models.Index(fields=['scope', 'day'], name='sm_usage_scope_day')],
                'constraints': [models.UniqueConstraint(fields=('day', 'scope', 'subject'), name='sm_usage_record_unique')],
            },
        ),
        migrations.RunPython(install, uninstall),
    ]

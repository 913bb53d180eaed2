# Issue 22: a requester may withdraw a pending request.
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('storagemanager', '0008_primary_identity'),
    ]

    operations = [
        migrations.AlterField(
            model_name='request',
            name='state',
            field=models.CharField(choices=[('pending', 'pending'), ('approved', 'approved'), ('declined', 'declined'), ('withdrawn', 'withdrawn')], default='pending', max_length=9),
        ),
    ]

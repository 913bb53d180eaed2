"""Each fileset's figures, kept between catalogue refreshes (issue 24, engine/filesetcache.py)."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("storagemanager", "0015_collection_list_indexes")]
    operations = [
        migrations.CreateModel(
            name="FilesetFigures",
            fields=[
                ("fileset_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("files", models.BigIntegerField()),
                ("bytes", models.BigIntegerField(null=True)),
                ("newest", models.DateTimeField(null=True)),
                ("unhashed", models.BigIntegerField()),
            ],
        ),
    ]

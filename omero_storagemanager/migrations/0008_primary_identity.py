"""What purge and restore check against reality (issue 19).

PrimaryFile: the identity (device, inode, size, mtime ns) and SHA1 of each primary file
when the app copied or wrote it. RepositoryRoot: the OMERO roots archived from, with
their device and marker. Location.marker: the marker written into <mount>/<id>/.
CopyFile.source_mtime_ns: the exact mtime a restore gives back.
"""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("storagemanager", "0007_collection_fillfactor")]
    operations = [
        migrations.AddField("location", "marker",
                            models.CharField(blank=True, default="", max_length=64)),
        migrations.AddField("copyfile", "source_mtime_ns", models.BigIntegerField(null=True)),
        migrations.CreateModel(
            name="PrimaryFile",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                        verbose_name="ID")),
                ("relpath", models.TextField(unique=True)),
                ("device", models.BigIntegerField()),
                ("inode", models.BigIntegerField()),
                ("size", models.BigIntegerField()),
                ("mtime_ns", models.BigIntegerField()),
                ("ctime_ns", models.BigIntegerField()),
                ("sha1", models.CharField(max_length=40)),
                ("recorded", models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.CreateModel(
            name="RepositoryRoot",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                        verbose_name="ID")),
                ("path", models.TextField(unique=True)),
                ("device", models.BigIntegerField()),
                ("marker", models.CharField(max_length=64)),
                ("recorded", models.DateTimeField(auto_now=True)),
            ],
        ),
    ]

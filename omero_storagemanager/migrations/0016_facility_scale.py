"""Facility scale (issue 24): each fileset's figures kept between catalogue refreshes
(FilesetFigures, engine/filesetcache.py), and the number of collections per group, owner
and kind kept by triggers (CollectionCount, views/listing.py).

The counts follow every write to the Collection table, whatever code makes it (save,
bulk_create, bulk update, delete, TRUNCATE): a row trigger on insert and delete, and on
an update that changes what is counted (gone, group, owner, kind) only, so that a scan
storing the figures of 100,000 collections fires nothing.
"""
from django.db import migrations, models

COUNTS = """
CREATE FUNCTION storagemanager_collection_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') AND NOT OLD.gone THEN
    UPDATE storagemanager_collectioncount SET n = n - 1
     WHERE group_id = OLD.group_id AND owner_id = OLD.owner_id AND kind = OLD.kind;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') AND NOT NEW.gone THEN
    INSERT INTO storagemanager_collectioncount (group_id, owner_id, kind, n)
    VALUES (NEW.group_id, NEW.owner_id, NEW.kind, 1)
    ON CONFLICT (group_id, owner_id, kind)
    DO UPDATE SET n = storagemanager_collectioncount.n + 1;
  END IF;
  RETURN NULL;
END
$$;
CREATE FUNCTION storagemanager_collection_count_truncate() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM storagemanager_collectioncount;
  RETURN NULL;
END
$$;
CREATE TRIGGER storagemanager_count_insert_delete
  AFTER INSERT OR DELETE ON storagemanager_collection
  FOR EACH ROW EXECUTE PROCEDURE storagemanager_collection_count();
CREATE TRIGGER storagemanager_count_update AFTER UPDATE ON storagemanager_collection
  FOR EACH ROW WHEN (OLD.gone IS DISTINCT FROM NEW.gone
                     OR OLD.group_id IS DISTINCT FROM NEW.group_id
                     OR OLD.owner_id IS DISTINCT FROM NEW.owner_id
                     OR OLD.kind IS DISTINCT FROM NEW.kind)
  EXECUTE PROCEDURE storagemanager_collection_count();
CREATE TRIGGER storagemanager_count_truncate AFTER TRUNCATE ON storagemanager_collection
  FOR EACH STATEMENT EXECUTE PROCEDURE storagemanager_collection_count_truncate();
INSERT INTO storagemanager_collectioncount (group_id, owner_id, kind, n)
SELECT group_id, owner_id, kind, count(*) FROM storagemanager_collection
 WHERE NOT gone GROUP BY group_id, owner_id, kind;
"""
COUNTS_REVERSE = """
DROP TRIGGER storagemanager_count_insert_delete ON storagemanager_collection;
DROP TRIGGER storagemanager_count_update ON storagemanager_collection;
DROP TRIGGER storagemanager_count_truncate ON storagemanager_collection;
DROP FUNCTION storagemanager_collection_count();
DROP FUNCTION storagemanager_collection_count_truncate();
"""


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
        migrations.CreateModel(
            name="CollectionCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                           serialize=False, verbose_name="ID")),
                ("group_id", models.BigIntegerField()),
                ("owner_id", models.BigIntegerField()),
                ("kind", models.CharField(max_length=7)),
                ("n", models.BigIntegerField(default=0)),
            ],
            options={"constraints": [models.UniqueConstraint(
                fields=("group_id", "owner_id", "kind"), name="sm_collection_count_unique")]},
        ),
        migrations.RunSQL(COUNTS, COUNTS_REVERSE),
    ]

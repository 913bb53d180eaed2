"""Indexes for the collections list (issues 22 and 24): a page of 100,000 collections is
read from an index in its sort order instead of sorting every row.

One btree per sort column with the id (the tie-break), only over the rows the list
shows (NOT gone); a column that may be NULL has a second one in descending order, as
missing values sort last both ways. And, where the database lets the app's user create
the pg_trgm extension (trusted from PostgreSQL 13: the owner of the database may), GIN
trigram indexes for the quick filter's "contains" on name, owner and group (on
UPPER(column::text), the expression Django's icontains compares); without it
the filter is still right, only slower (a warning says so).

The archived size (the sum of a collection's verified copies) is kept in a column of
the Collection table, `archived_bytes`, that the model does not declare (so that no
save() writes a stale value over it): triggers on the copy table recompute it whenever
a copy is added, removed, or changes state, size or collection, whatever code does it
(save, bulk update, delete); sorted and filtered through its index like the others.

Not on scanned_at, which every scan sets on every row: with an index on it none of those
updates could be made in place (HOT, migration 0007), and each would write every index
(100,000 rows: 13.7 s instead of 2.3 s). The list sorts on the last scan without one.
"""
import logging

from django.db import DatabaseError, migrations, models, transaction

logger = logging.getLogger(__name__)
TRIGRAM_COLUMNS = ("name", "owner_name", "group_name")


def _table(apps, schema_editor):
    return schema_editor.quote_name(apps.get_model("storagemanager", "Collection")._meta.db_table)


def add_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as exc:
        logger.warning("pg_trgm cannot be created (%s): the collections list's quick filter "
                       "works without its indexes, slower on many collections", exc)
        return
    for column in TRIGRAM_COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {schema_editor.quote_name('sm_list_trgm_' + column)} "
            f"ON {_table(apps, schema_editor)} USING gin "
            f"((UPPER({schema_editor.quote_name(column)}::text)) gin_trgm_ops) WHERE NOT \"gone\"")


# The trigger function locks the collection rows first, then sums in a statement of its
# own: it sees every copy committed meanwhile (READ COMMITTED takes a snapshot per
# statement), so two copies verified at once cannot leave only one counted.
ARCHIVED_SQL = """
ALTER TABLE storagemanager_collection ADD COLUMN archived_bytes bigint NOT NULL DEFAULT 0;
UPDATE storagemanager_collection c SET archived_bytes = s.total
  FROM (SELECT collection_id, SUM(bytes) AS total FROM storagemanager_copy
        WHERE state = 'verified' GROUP BY collection_id) s
  WHERE s.collection_id = c.id AND s.total <> 0;
CREATE FUNCTION storagemanager_archived_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ids bigint[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    ids := ARRAY[NEW.collection_id];
  ELSIF TG_OP = 'DELETE' THEN
    ids := ARRAY[OLD.collection_id];
  ELSE
    ids := ARRAY[OLD.collection_id, NEW.collection_id];
  END IF;
  PERFORM 1 FROM storagemanager_collection WHERE id = ANY(ids) ORDER BY id FOR UPDATE;
  UPDATE storagemanager_collection c
     SET archived_bytes = COALESCE((SELECT SUM(bytes) FROM storagemanager_copy
                                    WHERE collection_id = c.id AND state = 'verified'), 0)
   WHERE c.id = ANY(ids);
  RETURN NULL;
END
$$;
CREATE TRIGGER storagemanager_archived_insert AFTER INSERT ON storagemanager_copy
  FOR EACH ROW WHEN (NEW.state = 'verified') EXECUTE PROCEDURE storagemanager_archived_bytes();
CREATE TRIGGER storagemanager_archived_delete AFTER DELETE ON storagemanager_copy
  FOR EACH ROW WHEN (OLD.state = 'verified') EXECUTE PROCEDURE storagemanager_archived_bytes();
CREATE TRIGGER storagemanager_archived_update AFTER UPDATE ON storagemanager_copy
  FOR EACH ROW WHEN ((OLD.state = 'verified' OR NEW.state = 'verified')
                     AND (OLD.state IS DISTINCT FROM NEW.state
                          OR OLD.bytes IS DISTINCT FROM NEW.bytes
                          OR OLD.collection_id IS DISTINCT FROM NEW.collection_id))
  EXECUTE PROCEDURE storagemanager_archived_bytes();
CREATE INDEX sm_list_archived ON storagemanager_collection (archived_bytes, id) WHERE NOT gone;
"""
ARCHIVED_REVERSE = """
DROP TRIGGER storagemanager_archived_insert ON storagemanager_copy;
DROP TRIGGER storagemanager_archived_delete ON storagemanager_copy;
DROP TRIGGER storagemanager_archived_update ON storagemanager_copy;
DROP FUNCTION storagemanager_archived_bytes();
ALTER TABLE storagemanager_collection DROP COLUMN archived_bytes;
"""


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in TRIGRAM_COLUMNS:
        schema_editor.execute(
            f"DROP INDEX IF EXISTS {schema_editor.quote_name('sm_list_trgm_' + column)}")


class Migration(migrations.Migration):

    dependencies = [
        ('storagemanager', '0013_catalog_cursor'),
    ]

    operations = [
        migrations.RunPython(add_trigram_indexes, drop_trigram_indexes),
        migrations.RunSQL(ARCHIVED_SQL, ARCHIVED_REVERSE),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('name'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_name'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('kind'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_kind'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('omero_id'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_omero_id'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('owner_name'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_owner_name'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('group_name'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_group_name'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('files'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_files'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('images'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_images'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('bytes'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_bytes'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('newest_file'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_newest_file'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('last_access'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_last_access'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('created'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_created'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.OrderBy(models.F('newest_file'), descending=True, nulls_last=True), models.OrderBy(models.F('id'), descending=True), condition=models.Q(('gone', False)), name='sm_list_newest_file_desc'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.OrderBy(models.F('last_access'), descending=True, nulls_last=True), models.OrderBy(models.F('id'), descending=True), condition=models.Q(('gone', False)), name='sm_list_last_access_desc'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.OrderBy(models.F('created'), descending=True, nulls_last=True), models.OrderBy(models.F('id'), descending=True), condition=models.Q(('gone', False)), name='sm_list_created_desc'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(models.F('state'), models.F('id'), condition=models.Q(('gone', False)), name='sm_list_state'),
        ),
        migrations.AddIndex(
            model_name='collection',
            index=models.Index(condition=models.Q(('gone', False)), fields=['group_id', 'owner_id'], name='sm_list_visible'),
        ),
    ]

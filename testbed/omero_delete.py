"""What OMERO's delete of an imported fileset does to its database, for the test bed.

OMERO deletes a fileset with all its Images (a fileset is all-or-nothing): their
Pixels and thumbnails, their links to Datasets, Wells and annotations, the fileset's
entries, its import jobs and their log, and the original files' rows (and, on disk,
the files: the caller removes those, as it knows where the repository is). An original
file that is also the file of an annotation is kept, as OMERO would keep the
annotation's file.
"""

_JOB_TABLES = ("importjob", "uploadjob", "metadataimportjob", "pixeldatajob",
               "thumbnailgenerationjob", "indexingjob")


def delete_fileset(cur, fileset_id):
    """Delete fileset `fileset_id` and everything OMERO deletes with it, through the
    cursor `cur` (a writable connection). Returns the ids of its Images."""
    def ids(sql, *args):
        cur.execute(sql, args)
        return [row[0] for row in cur.fetchall()]

    images = ids("SELECT id FROM image WHERE fileset = %s", fileset_id)
    pixels = ids("SELECT id FROM pixels WHERE image = ANY(%s)", images)
    jobs = ids("SELECT child FROM filesetjoblink WHERE parent = %s", fileset_id)
    files = ids("SELECT originalfile FROM filesetentry WHERE fileset = %s", fileset_id)
    files += ids("SELECT child FROM joboriginalfilelink WHERE parent = ANY(%s)", jobs)
    params = {"px": pixels, "of": files, "im": images, "fs": fileset_id, "jobs": jobs}
    for sql in (
            "DELETE FROM thumbnail WHERE pixels = ANY(%(px)s)",
            "DELETE FROM pixelsoriginalfilemap WHERE child = ANY(%(px)s)"
            " OR parent = ANY(%(of)s)",
            "DELETE FROM pixels WHERE id = ANY(%(px)s)",
            "DELETE FROM imageannotationlink WHERE parent = ANY(%(im)s)",
            "DELETE FROM datasetimagelink WHERE child = ANY(%(im)s)",
            "DELETE FROM wellsample WHERE image = ANY(%(im)s)",
            "DELETE FROM image WHERE id = ANY(%(im)s)",
            "DELETE FROM filesetannotationlink WHERE parent = %(fs)s",
            "DELETE FROM joboriginalfilelink WHERE parent = ANY(%(jobs)s)",
            "DELETE FROM filesetjoblink WHERE parent = %(fs)s",
            *(f"DELETE FROM {table} WHERE job_id = ANY(%(jobs)s)" for table in _JOB_TABLES),
            "DELETE FROM job WHERE id = ANY(%(jobs)s)",
            "DELETE FROM filesetentry WHERE fileset = %(fs)s",
            "DELETE FROM fileset WHERE id = %(fs)s",
            "DELETE FROM originalfile o WHERE o.id = ANY(%(of)s) AND NOT EXISTS"
            " (SELECT 1 FROM annotation a WHERE a.file = o.id)"):
        cur.execute(sql, params)
    return images

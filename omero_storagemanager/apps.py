from django.apps import AppConfig


class StorageManagerConfig(AppConfig):
    name = "omero_storagemanager"
    # The label is the URL prefix OMERO.web mounts the app under (/storagemanager/)
    # and the prefix of its URL names and database tables.
    label = "storagemanager"
    verbose_name = "OMERO Storage Manager"
    # omeroweb sets no DEFAULT_AUTO_FIELD; fix ours so migrations never churn.
    default_auto_field = "django.db.models.BigAutoField"

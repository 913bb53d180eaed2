"""The archive user and group purged collections are moved to (manual 6.4), checked
against OMERO when an admin chooses them (issue 20).

They must exist, the group must not be one of OMERO's own (system, user, guest: data
there is visible to every user or to none), and the user must be a member of the group,
or OMERO would hold data whose owner cannot see it.
"""
OMERO_GROUPS = {0: "system", 1: "user", 2: "guest"}


class BadHolder(ValueError):
    pass


def check_archive_holder(conn, user_id, group_id):
    """BadHolder saying what is wrong with this archive user/group pair (None: keep)."""
    with conn.cursor() as cur:
        if user_id is not None:
            cur.execute("SELECT omename FROM experimenter WHERE id = %s", [user_id])
            if cur.fetchone() is None:
                raise BadHolder(f"archive_user_id: OMERO has no user {user_id}")
        if group_id is not None:
            if group_id in OMERO_GROUPS:
                raise BadHolder(f"archive_group_id: {group_id} is OMERO's own "
                                f"'{OMERO_GROUPS[group_id]}' group: choose a group of its own")
            cur.execute("SELECT name FROM experimentergroup WHERE id = %s", [group_id])
            if cur.fetchone() is None:
                raise BadHolder(f"archive_group_id: OMERO has no group {group_id}")
        if user_id is not None and group_id is not None:
            cur.execute("SELECT 1 FROM groupexperimentermap WHERE parent = %s AND child = %s",
                        [group_id, user_id])
            if cur.fetchone() is None:
                raise BadHolder(f"archive_user_id: user {user_id} is not a member of the "
                                f"archive group {group_id}: add them in OMERO first")

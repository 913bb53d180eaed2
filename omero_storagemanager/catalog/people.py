"""Users and groups as the OMERO database has them: names, e-mail addresses, group
permission levels and memberships. Read only, parametrised; the views, permissions,
statistics and e-mails ask here instead of writing SQL of their own."""


def group_levels(conn, group_ids):
    """{group id: experimentergroup.permissions} (-120 private ... -8 read-write)."""
    if not group_ids:
        return {}
    with conn.cursor() as cur:
        cur.execute("SELECT id, permissions FROM experimentergroup WHERE id = ANY(%s)",
                    [sorted(group_ids)])
        return dict(cur.fetchall())


def members_of(conn, group_ids):
    """Ids of the users in any of these groups."""
    if not group_ids:
        return set()
    with conn.cursor() as cur:
        cur.execute("SELECT child FROM groupexperimentermap WHERE parent = ANY(%s)",
                    [sorted(group_ids)])
        return {row[0] for row in cur.fetchall()}


def user_and_group_names(conn):
    """({user id: login name}, {group id: name}) of every OMERO user and group."""
    with conn.cursor() as cur:
        cur.execute("SELECT id, omename FROM experimenter")
        users = dict(cur.fetchall())
        cur.execute("SELECT id, name FROM experimentergroup")
        groups = dict(cur.fetchall())
    return users, groups


def people(conn):
    """Users and groups sorted by name, as [{"id", "name"}] each (choosing quotas)."""
    users, groups = user_and_group_names(conn)
    return {"users": [{"id": i, "name": n} for i, n in sorted(users.items(), key=lambda x: x[1])],
            "groups": [{"id": i, "name": n}
                       for i, n in sorted(groups.items(), key=lambda x: x[1])]}


def emails(conn, user_ids):
    """E-mail addresses (those with an @) of these users."""
    if not user_ids:
        return []
    with conn.cursor() as cur:
        cur.execute("SELECT email FROM experimenter WHERE id = ANY(%s) AND email LIKE %s",
                    [sorted(user_ids), "%@%"])
        return [row[0] for row in cur.fetchall()]

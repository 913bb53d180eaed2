"""The OpenAPI 3.1 description of the JSON API, served at api/v1/openapi.json.

This table is the one source: the served description is built from it, the tests check
every URL pattern, query parameter, response status and body against it
(tests/test_openapi.py), and the permission matrix calls every operation as every role
from it (`x-roles`: who may call the operation at all; the anonymous caller, OMERO's
guest user and OMERO.web's public user are refused everything with 403).
docs/api.md keeps the prose.
"""
from django.http import JsonResponse

from ..version import __version__

ROLES = ("member", "group_owner", "restricted_admin", "admin")  # signed-in OMERO users
EVERYONE = list(ROLES)
ADMIN = ["admin"]


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind):
    return {"type": [kind, "null"]}


STRING, INTEGER, NUMBER, BOOLEAN = ({"type": t} for t in ("string", "integer", "number",
                                                           "boolean"))
TIME = _nullable("string")  # ISO 8601, UTC
OBJECT = {"type": "object"}


def _obj(required, **properties):
    return {"type": "object", "required": list(required), "properties": properties}


def _list(item):
    return {"type": "array", "items": item}


JOB_STATES = ["queued", "running", "waiting", "done", "failed", "cancelled"]
ACTIONS = ["scan", "archive", "purge", "restore", "request_archive", "request_restore"]
PERSON = _obj(["id", "name"], id=_nullable("integer"), name=STRING)

SCHEMAS = {
    "Error": _obj(["error"], error={"type": "string", "minLength": 1}),
    "JobBrief": _obj(["id", "kind", "state", "progress", "wait_reason", "error"],
                     id=INTEGER, kind=STRING, state={"enum": JOB_STATES},
                     progress={"type": ["number", "null"], "minimum": 0, "maximum": 1},
                     wait_reason=STRING, error=STRING),
    "Job": {"allOf": [_ref("JobBrief"), _obj(
        ["collections", "location", "requested_by", "files_done", "files_total",
         "bytes_done", "bytes_total", "attempts", "created", "started", "finished",
         "seconds", "summary", "cancel_requested", "active"],
        collections=_list(STRING), location=_nullable("string"), requested_by=PERSON,
        files_done=INTEGER, files_total=_nullable("integer"), bytes_done=INTEGER,
        bytes_total=_nullable("integer"), attempts=INTEGER, created=TIME, started=TIME,
        finished=TIME, seconds=_nullable("number"), summary={"type": ["object", "null"]},
        cancel_requested=BOOLEAN, active=BOOLEAN,
        log_dir={"type": "string", "description": "admins only"},
        worker={"type": "string", "description": "admins only"})]},
    "JobListed": {"allOf": [_ref("Job"), _obj(["may_cancel", "may_retry", "may_read_log"],
                                              may_cancel=BOOLEAN, may_retry=BOOLEAN,
                                              may_read_log=BOOLEAN)]},
    "CollectionRow": _obj(
        ["key", "kind", "id", "name", "owner", "group", "state", "stored_state", "files",
         "images", "bytes", "archived_bytes", "shared_bytes", "newest_file", "last_access",
         "last_scan", "created", "job", "actions"],
        key={"type": "string", "pattern": "^(Project|Screen):[0-9]+$"},
        kind={"enum": ["project", "screen"]}, id=INTEGER, name=STRING, owner=PERSON,
        group=PERSON, state=STRING, stored_state=STRING, files=_nullable("integer"),
        images=_nullable("integer"), bytes=_nullable("integer"),
        archived_bytes=_nullable("integer"), shared_bytes=_nullable("integer"),
        newest_file=TIME, last_access=TIME, last_scan=TIME, created=TIME,
        job={"oneOf": [_ref("JobBrief"), {"type": "null"}]},
        actions=_list({"enum": ACTIONS})),
    "Request": _obj(
        ["id", "kind", "state", "collection", "requested_by", "comment", "created",
         "decided_by", "decision_comment", "decided", "job"],
        id=INTEGER, kind={"enum": ["archive", "restore"]},
        state={"enum": ["pending", "approved", "declined", "withdrawn"]},
        collection=_obj(["key", "name", "owner", "group"], key=STRING, name=STRING,
                        owner=STRING, group=STRING),
        requested_by=PERSON, comment=STRING, created=TIME,
        decided_by={"oneOf": [PERSON, {"type": "null"}]}, decision_comment=STRING,
        decided=TIME, job=_nullable("integer")),
    "CollectionDetail": {"allOf": [_ref("CollectionRow"), _obj(
        ["copies", "requests", "shared_with", "restore_help", "gone", "last_access_measured"],
        copies=_list(_obj(["id", "location", "state", "verified", "files", "bytes"],
                          id=INTEGER, location=OBJECT, state=STRING, verified=BOOLEAN,
                          files=_nullable("integer"), bytes=_nullable("integer"))),
        requests=_list(_ref("Request")),
        shared_with={"type": ["array", "null"],
                     "items": _obj(["key", "name"], key=STRING, name=_nullable("string"))},
        restore_help=_nullable("string"), gone=BOOLEAN,
        last_access_measured={**TIME, "description": (
            "when last_access was last read from the disk (the last stat or verify scan "
            "of the collection); null: never, last_access is then unknown")})]},
    "Usage": _obj(["id", "name", "collections", "online_files", "online_bytes",
                   "archived_bytes", "purged_bytes", "quota_bytes", "over_quota"],
                  id=_nullable("integer"), name=STRING, collections=INTEGER,
                  online_files=INTEGER, online_bytes=INTEGER, archived_bytes=INTEGER,
                  purged_bytes=INTEGER, quota_bytes=_nullable("integer"), over_quota=BOOLEAN),
    "Location": _obj(["id", "name", "type", "mount", "max_bytes", "purge_watermark",
                      "purge_enabled", "xml_folder", "current", "created"],
                     id=INTEGER, name=STRING, type=STRING, mount=STRING, max_bytes=INTEGER,
                     purge_watermark=INTEGER, purge_enabled=BOOLEAN, xml_folder=STRING,
                     current=BOOLEAN, created=TIME),
    "Size": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 2**62},
                       {"type": "string", "maxLength": 64, "examples": ["10 GB"]}]},
}

# Responses: status -> schema name (or an inline schema).
_ERRORS_GET = {400: "Error", 403: "Error", 404: "Error", 405: "Error", 414: "Error",
               503: "Error"}
_ERRORS_POST = {**_ERRORS_GET, 409: "Error"}


def _page_of(item):
    return _obj(["total", "page", "per_page", "pages", "items"], total=INTEGER, page=INTEGER,
                per_page=INTEGER, pages=INTEGER, items=_list(item))


def _query(name, schema, description, array=False):
    parameter = {"name": name, "in": "query", "required": False, "description": description,
                 "schema": _list(schema) if array else schema}
    if array:
        parameter.update(style="form", explode=True)
    return parameter


def _path(name, schema, description):
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}


ID = {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}
PAGE = {"type": "integer", "minimum": 1}
KEY = {"type": "string", "pattern": "^([Pp][Rr][Oo][Jj][Ee][Cc][Tt]|[Ss][Cc][Rr][Ee][Ee][Nn])"
                                  ":[0-9]{1,18}$",
       "examples": ["Project:4"]}
JOB_BODY = _obj(["job"], job=_ref("Job"))
PREFERENCES = _obj(["preferences", "mail"], preferences=OBJECT, mail=OBJECT)
LOCATIONS = _obj(["locations", "types"], locations=_list(_ref("Location")),
                 types=_list(STRING))
QUOTAS = _obj(["quotas", "people"], quotas=_list(_obj(["scope", "omero_id", "max_bytes"],
                                                      scope={"enum": ["user", "group"]},
                                                      omero_id=_nullable("integer"),
                                                      max_bytes=INTEGER)),
              people=_obj(["users", "groups"], users=_list(PERSON), groups=_list(PERSON)))
SCHEDULES = _obj(["schedules"], schedules=OBJECT)

# (method, path, operationId, summary, roles, parameters, request body, {status: schema})
OPERATIONS = [
    ("get", "/", "root", "A map of the API", EVERYONE, [], None,
     {200: _obj(["version", "endpoints"], version=INTEGER, endpoints=OBJECT)}),
    ("get", "/openapi.json", "openapi", "This description (public: it holds no data)",
     ["anonymous", "guest"] + EVERYONE, [], None,
     {200: _obj(["openapi", "paths"], openapi=STRING, paths=OBJECT)}),
    ("get", "/status/", "status", "System status", EVERYONE, [], None,
     {200: _obj(["version", "user", "omero_db", "collections", "locations", "workers",
                 "queue"], version=STRING, user=OBJECT, omero_db=OBJECT,
                collections=_nullable("integer"), locations=_list(OBJECT), workers=OBJECT,
                queue=OBJECT)}),
    ("get", "/usage/", "usage", "The signed-in user's usage against their quota", EVERYONE,
     [], None, {200: _obj(["user"], user=_ref("Usage"))}),
    ("get", "/collections/", "collections", "The collections this user may see", EVERYONE,
     [_query("q", {"type": "string", "maxLength": 200}, "quick filter: Project:12, a number, "
             "or a piece of the name, owner or group"),
      _query("rule", {"type": "string", "maxLength": 200}, "a rule filter such as 'size "
             "above 100 GB' (at most 10, all must hold)", array=True),
      _query("kind", {"enum": ["project", "screen"]}, "only Projects or Screens"),
      _query("sort", {"type": "string"}, "name, kind, id, owner, group, state, files, "
             "images, size, archived, newest, last_access, last_scan, created; - descending"),
      _query("page", PAGE, "1-based page"),
      _query("per_page", {"type": "integer", "minimum": 1, "maximum": 500}, "rows a page")],
     None, {200: {"allOf": [_page_of(_ref("CollectionRow")),
                            _obj(["sort"], sort=STRING)]}}),
    ("get", "/collections/{key}/", "collection", "One collection in detail", EVERYONE,
     [_path("key", KEY, "Project:N or Screen:N")], None, {200: _ref("CollectionDetail")}),
    ("post", "/actions/", "actions", "Scan, archive, purge or restore collections, or ask "
     "for an archive or restore", EVERYONE, [],
     _obj(["action", "collections"], action={"enum": ACTIONS},
          collections={"type": "array", "items": {"type": "string"}, "minItems": 1,
                       "maxItems": 500},
          mode={"enum": ["catalog", "stat", "verify"]},
          comment={"type": "string", "maxLength": 2000}),
     {202: {"oneOf": [JOB_BODY, _obj(["requests"], requests=_list(_ref("Request")))]}}),
    ("get", "/statistics/", "statistics", "Usage per user and group, and growth", EVERYONE,
     [], None, {200: _obj(["users", "groups", "timeline"], users=_list(_ref("Usage")),
                          groups=_list(_ref("Usage")), timeline=_list(OBJECT))}),
    ("get", "/objects/{type}/{id}/", "object", "The collections holding an OMERO object",
     EVERYONE, [_path("type", {"enum": ["project", "screen", "dataset", "image", "plate",
                                        "well"]}, "object type"),
                _path("id", ID, "OMERO id")], None,
     {200: _obj(["object", "collections", "note", "unknown"], object=OBJECT,
                collections=_list(_ref("CollectionDetail")), note=_nullable("string"),
                unknown=_list(STRING))}),
    ("post", "/objects/{type}/{id}/", "object_learn", "The same, after learning holders "
     "created in OMERO since the last sync", EVERYONE,
     [_path("type", {"enum": ["project", "screen", "dataset", "image", "plate", "well"]},
            "object type"), _path("id", ID, "OMERO id")], OBJECT,
     {200: _obj(["object", "collections", "note", "unknown"], object=OBJECT,
                collections=_list(_ref("CollectionDetail")), note=_nullable("string"),
                unknown=_list(STRING))}),
    ("get", "/breakdown/", "breakdown", "Where the bytes of the selected objects' "
     "collections lie", EVERYONE,
     [_query("objects", {"type": "string"}, "type-id,... e.g. project-1,dataset-5 (at most "
             "20)")], None, {200: _obj(["collections"], collections=_list(OBJECT))}),
    ("get", "/jobs/", "jobs", "The queue and history, newest first", EVERYONE,
     [_query("state", {"enum": ["active", "history", "all"]}, "which jobs"),
      _query("page", PAGE, "1-based page"),
      _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200}, "jobs a page")],
     None, {200: _page_of(_ref("JobListed"))}),
    ("get", "/jobs/{id}/", "job", "One job", EVERYONE, [_path("id", ID, "job id")], None,
     {200: {"allOf": [_ref("Job"), _obj(["may_read_log"], may_read_log=BOOLEAN)]}}),
    ("get", "/jobs/{id}/log/", "job_log", "The last 256 KB of a file of the job's log",
     EVERYONE, [_path("id", ID, "job id"),
                _query("file", {"enum": ["job.log", "files.txt", "errors.txt"]}, "which file")],
     None, {200: _obj(["job", "file", "text", "size", "truncated"], job=INTEGER, file=STRING,
                      text=STRING, size=INTEGER, truncated=BOOLEAN)}),
    ("post", "/jobs/{id}/cancel/", "job_cancel", "Cancel a job", EVERYONE,
     [_path("id", ID, "job id")], OBJECT, {200: JOB_BODY}),
    ("post", "/jobs/{id}/retry/", "job_retry", "Run a failed or cancelled job again",
     EVERYONE, [_path("id", ID, "job id")], OBJECT, {200: JOB_BODY}),
    ("get", "/requests/", "requests", "Archive and restore requests", EVERYONE,
     [_query("state", {"enum": ["pending", "decided", "all"]}, "which requests"),
      _query("mine", {"enum": ["0", "1"]}, "1: only the signed-in user's own requests")],
     None,
     {200: _obj(["items"], items=_list({"allOf": [_ref("Request"), _obj(
         ["may_decide"], may_decide=BOOLEAN)]}))}),
    ("post", "/requests/{id}/approve/", "request_approve", "Approve a request", EVERYONE,
     [_path("id", ID, "request id")], _obj([], comment={"type": "string", "maxLength": 2000}),
     {200: _obj(["request"], request=_ref("Request"))}),
    ("post", "/requests/{id}/decline/", "request_decline", "Decline a request", EVERYONE,
     [_path("id", ID, "request id")], _obj([], comment={"type": "string", "maxLength": 2000}),
     {200: _obj(["request"], request=_ref("Request"))}),
    ("post", "/requests/{id}/withdraw/", "request_withdraw", "The requester takes back a "
     "pending request", EVERYONE, [_path("id", ID, "request id")], OBJECT,
     {200: _obj(["request"], request=_ref("Request"))}),
    ("get", "/collections/{key}/files/", "collection_files", "A collection's files as OMERO "
     "records them, a page at a time", EVERYONE,
     [_path("key", KEY, "Project:N or Screen:N"), _query("page", PAGE, "1-based page"),
      _query("per_page", {"type": "integer", "minimum": 1, "maximum": 500}, "files a page")],
     None, {200: _obj(["items", "total", "page", "per_page", "pages", "bytes"],
                      items=_list(_obj(["path", "kind", "size"], path=STRING, kind=STRING,
                                       size=_nullable("integer"))),
                      total=INTEGER, page=INTEGER, per_page=INTEGER, pages=INTEGER,
                      bytes=INTEGER)}),
    ("get", "/collections/{key}/history/", "collection_history", "A collection's jobs, "
     "scans and what happened to it", EVERYONE, [_path("key", KEY, "Project:N or Screen:N")],
     None, {200: _obj(["key", "state", "jobs", "scans", "events"], key=STRING, state=STRING,
                      jobs=_list(_ref("Job")), scans=_list(OBJECT),
                      events=_list(_obj(["at", "what"], at=TIME, what=STRING)))}),
    ("get", "/capacity/", "capacity", "Usage history (the groups and users this user may "
     "see; for admins the primary storage, the locations and the projection of when the "
     "primary storage fills)", EVERYONE,
     [_query("window", {"enum": ["30", "90", "180", "365", "730"]}, "days of history "
             "(default 90)")], None,
     {200: _obj(["window_days", "groups", "users"], window_days=INTEGER,
                groups={"type": ["object", "array"]}, users={"type": ["object", "array"]})}),
    ("get", "/admin/planner/", "planner", "What purging the collections a rule matches "
     "would free (nothing is changed)", ADMIN,
     [_query("rule", {"type": "string", "maxLength": 200}, "a rule of the collections "
             "filter, such as 'last access before 2 years ago'", array=True),
      _query("window", {"enum": ["30", "90", "180", "365", "730"]}, "days the projection "
             "is fitted over (default 90)")], None,
     {200: _obj(["rules", "copies_required", "totals", "items", "listed"], rules=_list(STRING),
                copies_required=INTEGER, totals=OBJECT, items=_list(OBJECT),
                listed=INTEGER)}),
    ("post", "/admin/planner/queue/", "planner_queue", "Queue a plan: purge what has its "
     "copies, archive the rest and purge it once verified", ADMIN, [],
     _obj(["rules"], rules={"oneOf": [{"type": "string", "maxLength": 200},
                                      {"type": "array", "minItems": 1, "maxItems": 10,
                                       "items": {"type": "string", "maxLength": 200}}]}),
     {202: OBJECT}),
    ("get", "/admin/preferences/", "preferences", "The run-time settings", ADMIN, [], None,
     {200: PREFERENCES}),
    ("post", "/admin/preferences/", "preferences_set", "Change some settings (all or "
     "nothing)", ADMIN, [], _obj(["values"], values={"type": "object", "minProperties": 1}),
     {200: PREFERENCES}),
    ("get", "/admin/locations/", "locations", "The archive locations", ADMIN, [], None,
     {200: LOCATIONS}),
    ("post", "/admin/locations/", "location_add", "Add an archive location", ADMIN, [],
     _obj(["name", "type", "mount", "max_bytes"], name={"type": "string", "maxLength": 255},
          type={"enum": ["hdd", "tape", "automated", "symlink", "s3"]}, mount=STRING,
          max_bytes=_ref("Size"), purge_watermark={"type": "integer", "minimum": 0,
                                                   "maximum": 100},
          purge_enabled=BOOLEAN, xml_folder=STRING, current=BOOLEAN),
     {201: _obj(["location"], location=_ref("Location"))}),
    ("post", "/admin/locations/{id}/", "location_edit", "Change a location", ADMIN,
     [_path("id", ID, "location id")],
     _obj([], name={"type": "string", "maxLength": 255}, max_bytes=_ref("Size"),
          purge_watermark={"type": "integer", "minimum": 0, "maximum": 100},
          purge_enabled=BOOLEAN, xml_folder=STRING, mount=STRING),
     {200: _obj(["location"], location=_ref("Location"))}),
    ("post", "/admin/locations/{id}/{action}/", "location_action", "Make current, rescan, "
     "purge the read cache, or remove", ADMIN,
     [_path("id", ID, "location id"),
      _path("action", {"enum": ["current", "rescan", "purge-cache", "remove"]}, "what to do")],
     OBJECT, {200: OBJECT, 202: JOB_BODY}),
    ("get", "/admin/quotas/", "quotas", "Quotas, and OMERO's users and groups", ADMIN, [], None,
     {200: QUOTAS}),
    ("post", "/admin/quotas/", "quota_set", "Set or remove a quota", ADMIN, [],
     _obj(["scope", "max_bytes"], scope={"enum": ["user", "group"]},
          omero_id={"type": ["integer", "null"], "minimum": 0},
          max_bytes={"oneOf": [_ref("Size"), {"type": "null"}]}),
     {200: QUOTAS}),
    ("get", "/admin/schedules/", "schedules", "Each schedulable task's times", ADMIN, [], None,
     {200: SCHEDULES}),
    ("post", "/admin/schedules/", "schedule_set", "Set a task's daily times", ADMIN, [],
     _obj(["kind"], kind={"enum": ["backup", "sync", "scan", "cache_purge", "auto_archive",
                                   "quota_check"]},
          times={"oneOf": [{"type": "string", "maxLength": 200},
                           {"type": "array", "maxItems": 48,
                            "items": {"type": "string", "pattern": "^[0-9]{1,2}:[0-9]{2}$"}}]}),
     {200: SCHEDULES}),
    ("post", "/admin/schedules/{kind}/run/", "run_now", "Run a scheduled task now", ADMIN,
     [_path("kind", {"type": "string"}, "backup, sync, scan, cache_purge, auto_archive, "
            "quota_check")], OBJECT, {202: JOB_BODY}),
    ("post", "/admin/test-email/", "test_email", "Send a test e-mail", ADMIN, [], OBJECT,
     {200: _obj(["sent_to"], sent_to=_list(STRING))}),
]

_ERROR_TEXT = {400: "bad input", 403: "not signed in, or not allowed",
               404: "unknown, or not visible to this user", 405: "wrong method",
               409: "conflicts with the current state", 414: "query string too long",
               503: "the OMERO database cannot be reached"}


def _schema(value):
    return _ref(value) if isinstance(value, str) else value


# Stateful testing: where a response names something another operation takes.
LINKS = {
    ("collections", 200): {"collection": ("collection", {"key": "$response.body#/items/0/key"})},
    ("actions", 202): {"job": ("job", {"id": "$response.body#/job/id"}),
                       "cancel": ("job_cancel", {"id": "$response.body#/job/id"})},
    ("jobs", 200): {"job": ("job", {"id": "$response.body#/items/0/id"}),
                    "log": ("job_log", {"id": "$response.body#/items/0/id"}),
                    "retry": ("job_retry", {"id": "$response.body#/items/0/id"})},
    ("requests", 200): {"approve": ("request_approve", {"id": "$response.body#/items/0/id"}),
                        "decline": ("request_decline", {"id": "$response.body#/items/0/id"})},
    ("location_add", 201): {"edit": ("location_edit", {"id": "$response.body#/location/id"})},
    ("locations", 200): {"edit": ("location_edit", {"id": "$response.body#/locations/0/id"})},
}


def description(base="/storagemanager/api/v1"):
    """The OpenAPI 3.1 document."""
    paths = {}
    for method, path, op_id, summary, roles, parameters, body, answers in OPERATIONS:
        errors = _ERRORS_POST if method == "post" else _ERRORS_GET
        responses = {str(status): {"description": "success",
                                   "content": {"application/json": {"schema": _schema(s)}}}
                     for status, s in answers.items()}
        responses.update({str(status): {"description": _ERROR_TEXT[status],
                                        "content": {"application/json": {
                                            "schema": _ref("Error")}}}
                          for status in errors})
        for (source, status), links in LINKS.items():
            if source == op_id:
                responses[str(status)]["links"] = {
                    name: {"operationId": target, "parameters": parameters_}
                    for name, (target, parameters_) in links.items()}
        operation = {"operationId": op_id, "summary": summary, "x-roles": list(roles),
                     "parameters": parameters, "responses": responses}
        if method == "post":
            operation["requestBody"] = {"required": False, "content": {
                "application/json": {"schema": _schema(body or OBJECT)}}}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "omero-storagemanager", "version": __version__,
                 "description": "The Storage tab's JSON API (docs/api.md). Signed-in "
                                "OMERO.web users only: the session cookie, and Django's CSRF "
                                "token in X-CSRFToken on every POST. x-roles: who may call "
                                "an operation (member, group_owner, restricted_admin, "
                                "admin); everyone else gets 403, as do the anonymous "
                                "caller and OMERO's guest user."},
        "servers": [{"url": base}],
        "paths": paths,
        # The session cookie is OMERO.web's (its name is a setting): described in words
        # above, not as a security scheme a client would have to fill in.
        "components": {"schemas": SCHEMAS},
    }


def openapi_json(request, *args, **kwargs):
    """GET api/v1/openapi.json: the description (it holds no data: anyone may read it)."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse({"error": f"method {request.method} not allowed here; use "
                                          "GET or HEAD"}, status=405)
        response["Allow"] = "GET, HEAD"
        return response
    from django.urls import reverse

    base = reverse("storagemanager_api_root").rstrip("/")
    return JsonResponse(description(base))


openapi_json.api_methods = ("GET",)  # as the api decorator marks its endpoints

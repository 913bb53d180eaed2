"""The collections list: what a user may see, filtered, sorted and paged in SQL.

Everything the list can filter or sort on is a column of Collection or an annotation
computed by the database: the archived size (sum of verified copies), and the display
state, which adds what the latest job and pending requests say (waiting, running,
failed) to the stored state. Annotations the database would compute for all rows are
only added when a filter or the sort uses them; the page's rows get the rest.
"""
import re

from django.db.models import (BigIntegerField, Case, CharField, Exists, F, OuterRef, Q,
                              Subquery, Sum, Value, When)
from django.db.models.functions import Coalesce

from ..models import Collection, Copy, Job, Request
from .common import bad
from .rules import RuleError, rule_columns, rules_condition

SORTS = {
    "name": "name", "kind": "kind", "id": "omero_id", "owner": "owner_name",
    "group": "group_name", "state": "display_state", "files": "files", "images": "images",
    "size": "bytes", "archived": "archived_bytes", "newest": "newest_file",
    "last_access": "last_access", "last_scan": "scanned_at", "created": "created",
}
DEFAULT_SORT = "name"
MAX_PER_PAGE = 500
_KEY = re.compile(r"^\s*(project|screen)\s*:\s*([0-9]{1,18})\s*$", re.I)


def _latest_job():
    through = Job.collections.through.objects.filter(collection_id=OuterRef("pk")).exclude(
        job__state=Job.CANCELLED).order_by("-job_id")
    return through


def archived_bytes():
    verified = (Copy.objects.filter(collection=OuterRef("pk"), state=Copy.VERIFIED)
                .values("collection").annotate(total=Sum("bytes")).values("total"))
    return Coalesce(Subquery(verified, output_field=BigIntegerField()), Value(0))


def display_state():
    latest = Subquery(_latest_job().values("job__state")[:1], output_field=CharField())
    pending = Exists(Request.objects.filter(collection=OuterRef("pk"), state=Request.PENDING))
    return Case(
        When(Q(latest_job_state=Job.RUNNING), then=Value("running")),
        When(Q(latest_job_state__in=[Job.QUEUED, Job.WAITING]) | Q(has_pending_request=True),
             then=Value("waiting")),
        When(Q(latest_job_state=Job.FAILED), then=Value("failed")),
        default=F("state"), output_field=CharField()), latest, pending


def annotate(queryset, columns):
    """Add the computed columns named in `columns` (display_state, archived_bytes)."""
    if "archived_bytes" in columns:
        queryset = queryset.annotate(archived_bytes=archived_bytes())
    if "display_state" in columns:
        state, latest, pending = display_state()
        queryset = queryset.annotate(latest_job_state=latest, has_pending_request=pending)
        queryset = queryset.annotate(display_state=state)
    return queryset


def quick_filter(text):
    """Id ("12" or "Project:12"), or a piece of the name, owner or group."""
    text = text.strip()
    if len(text) > 200:
        raise bad("quick filter longer than 200 characters")
    if not text:
        return Q()
    key = _KEY.match(text)
    if key:
        return Q(kind=key.group(1).lower(), omero_id=int(key.group(2)))
    condition = (Q(name__icontains=text) | Q(owner_name__icontains=text)
                 | Q(group_name__icontains=text))
    if re.fullmatch(r"[0-9]{1,18}", text):  # not isdigit(): other scripts' digits
        condition |= Q(omero_id=int(text))
    return condition


def _int(params, name, default, low, high):
    raw = params.get(name)
    if raw in (None, ""):
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw) or not low <= int(raw) <= high:
        raise bad(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def parse_sort(raw):
    raw = (raw or DEFAULT_SORT).strip()
    descending = raw.startswith("-")
    name = raw[1:] if descending else raw
    if name not in SORTS:
        shown = repr(name) if len(name) <= 60 else repr(name[:60]) + "..."
        raise bad(f"cannot sort on {shown}; sort on one of {', '.join(SORTS)} "
                  "(prefix - for descending)")
    return name, descending


def collections_page(access, params):
    """{"total", "page", "per_page", "pages", "sort", "items": [Collection]} for the
    query parameters q, rule (repeated), kind, sort, page, per_page."""
    rules = params.getlist("rule")
    sort, descending = parse_sort(params.get("sort"))
    page = _int(params, "page", 1, 1, 10**9)
    per_page = _int(params, "per_page", 50, 1, MAX_PER_PAGE)
    kind = params.get("kind", "")
    if kind not in ("", "project", "screen"):
        raise bad("kind must be project or screen")
    try:
        condition = rules_condition(rules)
        needed = rule_columns(rules) | {SORTS[sort]}
    except RuleError as exc:
        raise bad(str(exc)) from None
    queryset = access.visible(Collection.objects.filter(gone=False))
    queryset = queryset.filter(quick_filter(params.get("q", "")))
    if kind:
        queryset = queryset.filter(kind=kind)
    queryset = annotate(queryset, needed).filter(condition)
    total = queryset.count()
    column = F(SORTS[sort])
    order = column.desc(nulls_last=True) if descending else column.asc(nulls_last=True)
    tie = "-pk" if descending else "pk"
    start = (page - 1) * per_page
    # The page's rows get every computed column; only per_page rows pay for them.
    rows = list(annotate(queryset, {"archived_bytes", "display_state"} - needed)
                .order_by(order, tie)[start:start + per_page])
    return {"total": total, "page": page, "per_page": per_page,
            "pages": max(1, -(-total // per_page)),
            "sort": ("-" if descending else "") + sort, "items": rows}

"""The collections list: what a user may see, filtered, sorted and paged in SQL.

Everything the list can filter or sort on is a column of Collection or an annotation
computed by the database: the archived size (the sum of verified copies, a column the
copy table's triggers keep), and the display state, which adds what the latest job and
pending requests say (waiting, running, failed) to the stored state, computed from a
few small sets of ids (not a subquery per row). A page is found in two steps: its ids,
read from the index of its sort order (migration 0015), then every column for those
rows alone. Issues 22 and 24; figures in docs/performance.md.
"""
import re

from django.core.exceptions import FieldDoesNotExist
from django.db.models import BigIntegerField, Count, F, Q, Sum
from django.db.models.expressions import RawSQL

from ..models import Collection, CollectionCount
from .common import bad
from .rules import RuleError, rule_columns, rules_condition
from .states import display_state, shown_otherwise

SORTS = {
    "name": "name", "kind": "kind", "id": "omero_id", "owner": "owner_name",
    "group": "group_name", "state": "display_state", "files": "files", "images": "images",
    "size": "bytes", "archived": "archived_bytes", "newest": "newest_file",
    "last_access": "last_access", "last_scan": "scanned_at", "created": "created",
}
DEFAULT_SORT = "name"
MAX_PER_PAGE = 500
_KEY = re.compile(r"^\s*(project|screen)\s*:\s*([0-9]{1,18})\s*$", re.I)


def archived_bytes():
    """The sum of the collection's verified copies (0 without one): the column the copy
    table's triggers keep (migration 0015), which the model does not declare."""
    return RawSQL(f'"{Collection._meta.db_table}"."archived_bytes"', (),
                  output_field=BigIntegerField())


def annotate(queryset, columns):
    """Add the computed columns named in `columns` (display_state, archived_bytes)."""
    if "archived_bytes" in columns:
        queryset = queryset.annotate(archived_bytes=archived_bytes())
    if "display_state" in columns:
        queryset = queryset.annotate(display_state=display_state())
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


def _order(name, descending):
    """Missing values last both ways. A column that cannot be NULL is sorted plainly
    descending: PostgreSQL reads an index backwards only for the exact NULLS order it
    gives (DESC NULLS FIRST), and the rows are the same."""
    column = F(name)
    if not descending:
        return column.asc(nulls_last=True)
    try:
        nullable = Collection._meta.get_field(name).null
    except FieldDoesNotExist:  # a computed column: never NULL
        nullable = False
    return column.desc(nulls_last=True) if nullable else column.desc()


def _by_state(queryset, descending, start, per_page):
    """(total, the page's ids) sorted on the display state, then the id, without
    computing every row's display state: the rows whose state no job or request decides
    are counted per stored state and read in id order from the state's index; the few
    others (shown_otherwise) are read with their display state and merged in."""
    plain = queryset.exclude(shown_otherwise())
    counts = dict(plain.order_by().values_list("state").annotate(n=Count("pk")))
    others = {}
    for pk, state in (queryset.filter(shown_otherwise()).annotate(display_state=display_state())
                      .values_list("pk", "display_state")):
        others.setdefault(state, []).append(pk)
    total = sum(counts.values()) + sum(len(pks) for pks in others.values())
    ids, end, first = [], start + per_page, 0
    # The states are lower-case ASCII words that no collation orders differently.
    for state in sorted(set(counts) | set(others), reverse=descending):
        size = counts.get(state, 0) + len(others.get(state, []))
        low, high = max(start - first, 0), min(end - first, size)
        first += size
        if low >= high:
            continue
        tie = "-pk" if descending else "pk"
        rows = list(plain.filter(state=state).order_by(tie).values_list("pk", flat=True)[:high])
        rows = sorted(rows + others.get(state, []), reverse=descending)
        ids += rows[low:high]
    return total, ids


def quick_filter_text(params):
    return params.get("q", "").strip()


def _counted_total(access, kind):
    """The number of collections `access` may see (of `kind`, or both), exact, from the
    counts the Collection table's triggers keep per group, owner and kind (migration
    0016): a sum over a few hundred rows, where counting 100,000 rows was most of a
    list request's time. Only without filters: a filter's total needs its rows."""
    counts = access.visible(CollectionCount.objects.all())
    if kind:
        counts = counts.filter(kind=kind)
    return counts.aggregate(total=Sum("n"))["total"] or 0


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
    queryset = annotate(queryset, needed - {"display_state"}).filter(condition)
    start = (page - 1) * per_page
    if sort == "state":
        total, ids = _by_state(queryset, descending, start, per_page)
    else:
        total = (_counted_total(access, kind) if not rules and not quick_filter_text(params)
                 else queryset.count())
        # The page's ids first, on the sort's columns only; then every computed column
        # for those rows alone (an OFFSET still computes the rows it skips).
        ids = list(queryset.order_by(_order(SORTS[sort], descending),
                                     "-pk" if descending else "pk")
                   .values_list("pk", flat=True)[start:start + per_page])
    found = {c.pk: c for c in annotate(Collection.objects.filter(pk__in=ids),
                                       {"archived_bytes", "display_state"})}
    return {"total": total, "page": page, "per_page": per_page,
            "pages": max(1, -(-total // per_page)),
            "sort": ("-" if descending else "") + sort, "items": [found[pk] for pk in ids]}

"""Rule filters of the collections list, parsed strictly into ORM conditions.

A rule is `<field> <operator> <value>`, in words a user would write:

    last access before 2024-01-01      size above 100 GB       state is purged
    owner is alice                     name contains "live"    last scan is never
    newest file after 90 days ago      files at least 1000     kind is screen

Only the fields and operators below exist; anything else is refused with a message
that says what is allowed. Values become query parameters, never SQL text. Sizes take
B, KB, MB, GB, TB, PB (powers of 1024, as the sizes shown) or KiB...PiB; dates are
YYYY-MM-DD (UTC days) or "N days|weeks|months|years ago".
"""
import math
import re
from datetime import date, datetime, time, timedelta, timezone

from django.db.models import Q

from .states import state_is

MAX_RULES = 10
MAX_LENGTH = 200
MAX_INT = 2**62

DISPLAY_STATES = ("online", "archived", "partially_purged", "purged", "restoring",
                  "waiting", "running", "failed")

# name shown to users -> (value type, queryset field)
FIELDS = {
    "name": ("text", "name"),
    "owner": ("text", "owner_name"),
    "group": ("text", "group_name"),
    "kind": ("kind", "kind"),
    "type": ("kind", "kind"),
    "id": ("int", "omero_id"),
    "state": ("state", "state"),  # the display state: states.state_is
    "files": ("int", "files"),
    "images": ("int", "images"),
    "size": ("size", "bytes"),
    "archived size": ("size", "archived_bytes"),
    "shared size": ("size", "shared_bytes"),
    "newest file": ("date", "newest_file"),
    "last access": ("date", "last_access"),
    "last scan": ("date", "scanned_at"),
    "created": ("date", "created"),
}

_NUMBER_OPS = {"above": "gt", "over": "gt", "more than": "gt", ">": "gt",
               "below": "lt", "under": "lt", "less than": "lt", "<": "lt",
               "at least": "gte", ">=": "gte", "at most": "lte", "<=": "lte",
               "is": "exact", "=": "exact", "is not": "not", "!=": "not"}
OPERATORS = {
    "text": {"is": "iexact", "is not": "not", "contains": "icontains",
             "does not contain": "not_icontains", "starts with": "istartswith"},
    "kind": {"is": "exact", "is not": "not"},
    "state": {"is": "exact", "is not": "not"},
    "int": _NUMBER_OPS,
    "size": _NUMBER_OPS,
    "date": {"before": "lt", "<": "lt", "after": "gt", ">": "gt", "on": "on", "is": "on",
             "is never": "never", "never": "never", "is not never": "ever"},
}
_UNITS = {"": 1, "b": 1, "byte": 1, "bytes": 1}
for _i, _p in enumerate("kmgtp", start=1):
    _UNITS.update({_p: 1024**_i, _p + "b": 1024**_i, _p + "ib": 1024**_i})
# re.ASCII: \d alone takes any script's digits, which int() and float() then read.
_SIZE = re.compile(r"^(\d{1,30}(?:\.\d{1,30})?)\s*([a-z]*)$", re.I | re.ASCII)
_AGO = re.compile(r"^(\d{1,5})\s+(day|week|month|year)s?\s+ago$", re.I | re.ASCII)
# The days a date rule may name: a day either side stays within Python's dates.
FIRST_DAY, LAST_DAY = date(1, 1, 2), date(9999, 12, 30)
_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}


class RuleError(ValueError):
    pass


def _split(rule):
    """(field, type, column, operator word, value text) of one rule."""
    for field in sorted(FIELDS, key=len, reverse=True):
        match = re.match(r"\s*" + r"\s+".join(map(re.escape, field.split())) + r"\s+(.*)$",
                         rule, re.I | re.S)
        if match:
            break
    else:
        raise RuleError(f"rule {rule!r}: unknown field; fields are "
                        + ", ".join(sorted(set(FIELDS) - {"type"})))
    vtype, column = FIELDS[field]
    rest = match.group(1).strip()
    for op in sorted(OPERATORS[vtype], key=len, reverse=True):
        word = op[0].isalpha()
        pattern = r"\s+".join(map(re.escape, op.split())) + (r"(?:\s+|$)" if word else r"\s*")
        found = re.match(pattern + r"(.*)$", rest, re.I | re.S)
        if found:
            return field, vtype, column, op, found.group(1).strip()
    raise RuleError(f"rule {rule!r}: {field} takes the operators "
                    + ", ".join(f'"{o}"' for o in OPERATORS[vtype]))


def parse_size(text):
    match = _SIZE.match(text.strip())
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise RuleError(f"not a size: {text!r} (write e.g. 100 GB, 512 MB, 1.5 TB)")
    number = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(number) or number > MAX_INT:
        raise RuleError(f"size too large: {text!r}")
    return int(number)


def parse_int(text):
    if not re.fullmatch(r"[0-9]{1,18}", text.strip()):
        raise RuleError(f"not a whole number: {text!r}")
    return int(text)


def parse_day(text, now=None):
    """The UTC day a date value names: YYYY-MM-DD or "N days ago", within
    FIRST_DAY..LAST_DAY (beyond them a day's start or end is not a date any more)."""
    text = text.strip()
    ago = _AGO.match(text)
    out_of_range = RuleError(f"date out of range: {text!r} (from {FIRST_DAY} to {LAST_DAY})")
    if ago:
        now = now or datetime.now(timezone.utc)
        try:
            day = (now - timedelta(days=int(ago.group(1)) * _DAYS[ago.group(2).lower()])).date()
        except OverflowError:
            raise out_of_range from None
    else:
        try:
            if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
                raise ValueError
            day = date.fromisoformat(text)
        except ValueError:
            raise RuleError(f"not a date: {text!r} (write YYYY-MM-DD or e.g. 90 days ago)"
                            ) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise out_of_range
    return day


def _unquote(text):
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def rule_condition(rule, now=None):
    """The Q of one rule; RuleError with a message for the user when it is not valid."""
    if not isinstance(rule, str) or not rule.strip():
        raise RuleError("empty rule")
    if len(rule) > MAX_LENGTH:
        raise RuleError(f"rule longer than {MAX_LENGTH} characters")
    field, vtype, column, op, value = _split(rule)
    lookup = OPERATORS[vtype][op]
    if vtype == "date":
        if lookup in ("never", "ever"):
            if value:
                raise RuleError(f"rule {rule!r}: nothing may follow {op!r}")
            return Q(**{f"{column}__isnull": lookup == "never"})
        day = parse_day(value, now)
        start = datetime.combine(day, time.min, tzinfo=timezone.utc)
        end = start + timedelta(days=1)
        if lookup == "lt":
            return Q(**{f"{column}__lt": start})
        if lookup == "gt":
            return Q(**{f"{column}__gte": end})
        return Q(**{f"{column}__gte": start, f"{column}__lt": end})
    if not value:
        raise RuleError(f"rule {rule!r}: a value must follow {op!r}")
    if vtype == "text":
        value = _unquote(value)
        if lookup == "not":
            return ~Q(**{f"{column}__iexact": value})
        if lookup == "not_icontains":
            return ~Q(**{f"{column}__icontains": value})
        return Q(**{f"{column}__{lookup}": value})
    if vtype in ("kind", "state"):
        allowed = ("project", "screen") if vtype == "kind" else DISPLAY_STATES
        value = re.sub(r"[\s-]+", "_", _unquote(value).strip().lower())
        if value not in allowed:
            raise RuleError(f"rule {rule!r}: {field} is one of "
                            + ", ".join(a.replace("_", " ") for a in allowed))
        condition = state_is(value) if vtype == "state" else Q(**{column: value})
        return ~condition if lookup == "not" else condition
    number = parse_size(value) if vtype == "size" else parse_int(value)
    if lookup == "not":
        return ~Q(**{column: number})
    return Q(**{f"{column}__{lookup}": number})


def rules_condition(rules, now=None):
    """The Q of all rules (all must hold)."""
    if len(rules) > MAX_RULES:
        raise RuleError(f"at most {MAX_RULES} rules")
    condition = Q()
    for rule in rules:
        condition &= rule_condition(rule, now)
    return condition


def rule_columns(rules):
    """The queryset fields the rules use (the listing annotates only what is needed)."""
    return {FIELDS[_split(rule)[0]][1] for rule in rules}


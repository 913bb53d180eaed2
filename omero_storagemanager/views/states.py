"""A collection's display state, the one the list shows, sorts and filters on: its stored
state, unless its latest job that was not cancelled is running (running), queued or
waiting (waiting), or failed (failed), or a request for it is pending (waiting).

Both forms are built from a few sets of collection ids that are not correlated with the
listed row (the database computes each once per query and probes it as a hash), so a
list of 100,000 collections never runs a subquery per row: `display_state()` for the
value (sorting, the page's rows) and `state_is()` for a filter, an equivalent condition
on the stored state and those sets, which an index on the state answers.
"""
import functools

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Case, CharField, Exists, F, OuterRef, Q, Value, When
from django.db.models.expressions import RawSQL

from ..models import Collection, Job, Request

SHOWN_FROM_JOBS = ("running", "waiting", "failed")


def latest_in(states):
    """Ids of the collections whose latest job that was not cancelled is in `states`:
    only jobs in `states` are read, each checked against the later jobs of its own
    collections (job_collections' index on collection_id)."""
    through = Job.collections.through.objects
    later = through.filter(collection_id=OuterRef("collection_id"),
                           job_id__gt=OuterRef("job_id")).exclude(job__state=Job.CANCELLED)
    return (through.filter(job__state__in=states).filter(~Exists(later))
            .values("collection_id"))


def _pending():
    return Request.objects.filter(state=Request.PENDING).values("collection_id")


def _sets():
    """(running, waiting, pending, failed) id sets; running, waiting and failed are
    disjoint (one latest job each)."""
    return (latest_in([Job.RUNNING]), latest_in([Job.QUEUED, Job.WAITING]), _pending(),
            latest_in([Job.FAILED]))


def _expression():
    running, waiting, pending, failed = _sets()
    return Case(
        When(pk__in=running, then=Value("running")),
        When(Q(pk__in=waiting) | Q(pk__in=pending), then=Value("waiting")),
        When(pk__in=failed, then=Value("failed")),
        default=F("state"), output_field=CharField())


@functools.cache
def _compiled():
    """The expression's SQL, compiled once per process (building and compiling it in the
    ORM took 10-20 ms of every request). It holds no input, only constants."""
    query = Collection.objects.annotate(display_state=_expression()).query
    sql, params = query.get_compiler(using=DEFAULT_DB_ALIAS).compile(
        query.annotations["display_state"])
    return sql, tuple(params)


def display_state():
    """The display state as an annotation on querysets of Collection."""
    sql, params = _compiled()
    return RawSQL(sql, params, output_field=CharField())


def state_is(state):
    """The condition "the display state is `state`", on the stored state and the id
    sets (no value computed per row)."""
    running, waiting, pending, failed = _sets()
    if state == "running":
        return Q(pk__in=running)
    if state == "waiting":
        return Q(pk__in=waiting.union(pending)) & ~Q(pk__in=running)
    if state == "failed":
        return Q(pk__in=failed) & ~Q(pk__in=pending)
    return Q(state=state) & ~shown_otherwise()


def shown_otherwise():
    """The condition "a job or a request decides the display state" (the few collections
    whose display state is not their stored one, or may not be)."""
    running, waiting, pending, failed = _sets()
    # One set (a UNION), not four: the database then finds these rows by their ids.
    return Q(pk__in=running.union(waiting, pending, failed))

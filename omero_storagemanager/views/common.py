"""What every view shares: who is asking, JSON answers and errors, the decorators.

`api(...)` wraps a JSON endpoint: OMERO.web's login (an anonymous caller gets a JSON 403,
not a login page), the allowed methods, the admin check (on the Gateway itself, in the
view: omeroweb's own isAdmin check is skipped when a `conn` is passed in), a JSON body
parser, and every refusal as {"error": "..."} with its status. CSRF is left to Django's
middleware, which OMERO.web runs on every POST (its failure answer is JSON too).
"""
import functools
import json
import logging

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from omeroweb.decorators import login_required

from .. import catalog, settings
from ..gateway import gateway_for
from ..permissions import Access

logger = logging.getLogger(__name__)
MAX_BODY = 1_000_000  # bytes of a JSON body; nothing the API takes comes near it
# PostgreSQL text cannot hold NUL: refused up front rather than failing in the database.
NUL_MESSAGE = "NUL characters are not allowed"


class ApiError(Exception):
    """A refusal with its HTTP status: 400 bad input, 403 not allowed, 404 unknown (or
    not visible to this user), 409 conflict with the current state, 503 OMERO database
    unreachable."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def bad(message):
    return ApiError(400, message)


def forbidden(message="not allowed"):
    return ApiError(403, message)


def not_found(message):
    return ApiError(404, message)


def conflict(message):
    return ApiError(409, message)


class _Identity:
    """The Gateway's identity answers, asked once per request (each may be a round
    trip to OMERO)."""

    def __init__(self, gateway):
        self.gateway = gateway
        self._cache = {}

    def _once(self, name):
        if name not in self._cache:
            self._cache[name] = getattr(self.gateway, name)()
        return self._cache[name]

    def user_id(self):
        return self._once("user_id")

    def user_name(self):
        return self._once("user_name")

    def is_admin(self):
        # Only Gateway.is_admin() decides: no other attribute of `conn` is trusted.
        return self._once("is_admin") is True

    def member_of_groups(self):
        return self._once("member_of_groups")

    def leader_of_groups(self):
        return self._once("leader_of_groups")


class Requester:
    """The signed-in user of one request: identity, access rules, OMERO database."""

    def __init__(self, conn):
        self.gateway = gateway_for(conn)
        self.identity = _Identity(self.gateway)
        self._catalog = None
        self._access = None

    @property
    def user_id(self):
        return self.identity.user_id()

    @property
    def user_name(self):
        return self.identity.user_name()

    @property
    def who(self):
        """(id, name), as jobs and requests record who asked."""
        return self.user_id, self.user_name

    @property
    def admin(self):
        return self.identity.is_admin()

    def catalog(self):
        """A read-only connection to the OMERO database, opened on first use."""
        if self._catalog is None:
            try:
                self._catalog = catalog.connect()
            except catalog.CatalogUnavailable as exc:
                logger.error("%s", exc)
                raise ApiError(503, "the OMERO database cannot be reached; try again later "
                                    "or tell your OMERO administrator") from None
        return self._catalog

    @property
    def access(self):
        if self._access is None:
            self._access = Access.for_request(self.identity, self.catalog())
        return self._access

    def manages_any_group(self):
        return self.admin or bool(self.access.leader_of)

    def close(self):
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None


class _ApiLogin(login_required):
    """OMERO.web's login, answering an anonymous API call with JSON instead of a
    redirect to the login page."""

    def on_not_logged_in(self, request, url, error=None):
        return JsonResponse({"error": "not signed in to OMERO.web"}, status=403)


def json_body(request):
    """The request's JSON object body (an empty object for an empty body)."""
    if len(request.body) > MAX_BODY:
        raise bad("request body too large")
    if not request.body:
        return {}
    if "json" not in request.content_type:
        raise bad("send a JSON body with Content-Type: application/json")
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise bad("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad("the body must be a JSON object")
    if _has_nul(data):
        raise bad(NUL_MESSAGE)
    return data


def _has_nul(value):
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def answer(data, status=200):
    return JsonResponse(data, status=status, encoder=DjangoJSONEncoder, safe=False)


def api(methods=("GET",), admin=False):
    """Decorator of a JSON endpoint `view(request, requester, *args, **kwargs)`; the view
    returns a dict (200), a (dict, status) pair or a response."""

    def decorate(view):
        @_ApiLogin()
        @functools.wraps(view)
        def endpoint(request, *args, **kwargs):
            conn = kwargs.pop("conn", None)
            kwargs.pop("url", None)
            if request.method not in methods:
                response = answer({"error": f"method {request.method} not allowed here; "
                                            f"use {' or '.join(methods)}"}, 405)
                response["Allow"] = ", ".join(methods)
                return response
            if any("\x00" in key or "\x00" in value
                   for key, values in request.GET.lists() for value in values):
                return answer({"error": NUL_MESSAGE}, 400)
            requester = Requester(conn)
            try:
                if admin and not requester.admin:
                    raise forbidden("for OMERO administrators only")
                result = view(request, requester, *args, **kwargs)
            except ApiError as exc:
                return answer({"error": exc.message}, exc.status)
            finally:
                requester.close()
            if isinstance(result, HttpResponseBase):
                return result
            if isinstance(result, tuple):
                return answer(*result)
            return answer(result)

        return endpoint

    return decorate


def page(template, admin=False, manager=False):
    """Decorator of an HTML page `view(request, requester) -> dict` (the template's
    context). Pages are shells: their scripts fetch everything from the JSON API, which
    checks permissions again. admin: OMERO admins only; manager: admins and owners of a
    group (when group owners may manage)."""

    def decorate(view):
        @login_required()
        @ensure_csrf_cookie  # the pages' scripts send it back as X-CSRFToken
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            conn = kwargs.pop("conn", None)
            kwargs.pop("url", None)
            requester = Requester(conn)
            try:
                allowed = (requester.admin or not (admin or manager)
                           or (manager and requester.manages_any_group()))
                context = base_context(request, requester)
                if not allowed:
                    return render(request, "omero_storagemanager/refused.html", context,
                                  status=403)
                context.update(view(request, requester, *args, **kwargs) or {})
                return render(request, template, context)
            except ApiError as exc:
                context = {"error": exc.message}
                return render(request, "omero_storagemanager/refused.html", context,
                              status=exc.status)
            finally:
                requester.close()

        return wrapped

    return decorate


def top_links():
    """OMERO.web's top links (omero.web.ui.top_links), so the Storage pages keep the
    header users know from the webclient."""
    from django.conf import settings as django_settings
    from django.urls import NoReverseMatch, reverse

    links = []
    for entry in getattr(django_settings, "TOP_LINKS", []):
        if len(entry) < 2:
            continue
        label, target = entry[0], entry[1]
        try:
            href = reverse(target) if isinstance(target, str) else reverse(**target)
        except (NoReverseMatch, TypeError):
            href = target if isinstance(target, str) else "#"
        attrs = entry[2] if len(entry) > 2 and isinstance(entry[2], dict) else {}
        links.append({"label": label, "href": href, "title": attrs.get("title", ""),
                      "storage": target == "storagemanager_index"})
    return links


def base_context(request, requester):
    from ..tasks.notify import mail_configured
    from .approvals import pending_to_decide

    try:
        manager = requester.manages_any_group()
        pending = pending_to_decide(requester) if manager else 0
    except ApiError:  # OMERO database down: the page still shows, saying so
        manager, pending = requester.admin, 0
    return {
        "sm_pending_requests": pending,
        "sm_mail": mail_configured(),
        "sm_user": {"id": requester.user_id, "name": requester.user_name,
                    "admin": requester.admin},
        "sm_manager": manager,
        "sm_demo": settings.DEMO,
        "sm_top_links": top_links(),
    }

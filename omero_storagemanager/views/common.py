"""What every view shares: who is asking, JSON answers and errors, the decorators.

`api(...)` wraps a JSON endpoint: OMERO.web's login (an anonymous caller gets a JSON 403,
not a login page), the allowed methods, the admin check (on the Gateway itself, in the
view: omeroweb's own isAdmin check is skipped when a `conn` is passed in), a JSON body
parser, and every refusal as {"error": "..."} with its status. CSRF is Django's own
check (CsrfViewMiddleware.process_view), made in the endpoint on every POST on the
header token only (OMERO.web's failure answer is JSON too).
"""
import functools
import json
import logging
import math

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponseBase, JsonResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from omeroweb.decorators import login_required

from .. import catalog, settings
from ..gateway import gateway_for
from .. import permissions
from ..permissions import Access

logger = logging.getLogger(__name__)
MAX_BODY = 1_000_000  # bytes of a JSON body; nothing the API takes comes near it
MAX_DEPTH = 16  # levels of nesting in a JSON body; the deepest the API takes is 3
# Numbers in a body must fit PostgreSQL's bigint, where ids and sizes end up.
BIGINT = 2**63 - 1
# Characters of a query string. gunicorn refuses a request line over 4094 bytes by
# itself (--limit-request-line), with an HTML page the app never sees; below that the
# app answers a JSON 414, so a client learns the same thing either way.
MAX_QUERY = 4000
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

    def admin_privileges(self):
        return self._once("admin_privileges") if self.is_admin() else []


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
        """A full OMERO admin (a restricted admin's rights are the Access's to decide)."""
        return permissions.is_full_admin(self.identity)

    def refusal(self):
        return permissions.refusal(self.user_id, self.user_name)

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
            self._access = Access.for_request(self.identity, self.catalog)
        return self._access

    def manages_any_group(self):
        return self.admin or permissions.decides_some_requests(self.access)

    def close(self):
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None


class _ApiLogin(login_required):
    """OMERO.web's login, answering an anonymous API call with JSON instead of a
    redirect to the login page."""

    def on_not_logged_in(self, request, url, error=None):
        return JsonResponse({"error": "not signed in to OMERO.web"}, status=403)


def _refuse_constant(name):
    raise bad(f"{name} is not a number the API takes: send a finite number")


def _finite_float(text):
    number = float(text)
    if not math.isfinite(number):
        raise bad(f"{text} is out of range: send a finite number")
    return number


def _bounded_int(text):
    if len(text.lstrip("-")) > 19 or abs(int(text)) > BIGINT:
        shown = text if len(text) <= 30 else text[:30] + "..."
        raise bad(f"{shown} is out of range: whole numbers go up to {BIGINT}")
    return int(text)


def json_body(request):
    """The request's JSON object body (an empty object for an empty body). Refuses what
    the views must never see: NaN and infinities, numbers beyond bigint, nesting deeper
    than MAX_DEPTH, NUL characters."""
    if len(request.body) > MAX_BODY:
        raise bad("request body too large")
    if not request.body:
        return {}
    if "json" not in request.content_type:
        raise bad("send a JSON body with Content-Type: application/json")
    try:
        data = json.loads(request.body, parse_constant=_refuse_constant,
                          parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        raise bad(f"the body is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except (ValueError, UnicodeDecodeError):
        raise bad("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad("the body must be a JSON object")
    _check_tree(data)
    return data


def _check_tree(data):
    """Depth and NUL characters, walked without recursion (a body may be deep)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise bad(f"the body is nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(value, str):
            if "\x00" in value:
                raise bad(NUL_MESSAGE)
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise bad(NUL_MESSAGE)
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def answer(data, status=200):
    return JsonResponse(data, status=status, encoder=DjangoJSONEncoder, safe=False)


def api(methods=("GET",), admin=False):
    """Decorator of a JSON endpoint `view(request, requester, *args, **kwargs)`; the view
    returns a dict (200), a (dict, status) pair or a response. HEAD is answered wherever
    GET is, without a body; anything the view did not foresee is a JSON 500 that says
    nothing of the code (the traceback goes to the log)."""
    allowed = tuple(methods) + (("HEAD",) if "GET" in methods else ())

    def decorate(view):
        @functools.wraps(view)
        def endpoint(request, *args, **kwargs):
            conn = kwargs.pop("conn", None)
            kwargs.pop("url", None)
            head = request.method == "HEAD"
            if head:
                request.method = "GET"  # the view answers as for GET; the body is dropped
            response = _run(view, request, conn, args, kwargs, admin)
            if head:
                request.method = "HEAD"
                response.content = b""
            return response

        signed_in = _ApiLogin()(endpoint)

        @functools.wraps(signed_in)
        def method_checked(request, *args, **kwargs):
            if request.method == "POST":  # every POST needs the token, first
                refused = _csrf_refusal(request)
                if refused is not None:
                    return refused
            # The methods are public (openapi.json): a wrong one is 405 for anyone.
            if request.method not in allowed:
                response = answer({"error": f"method {request.method} not allowed here; "
                                            f"use {' or '.join(allowed)}"}, 405)
                response["Allow"] = ", ".join(allowed)
                return response
            return signed_in(request, *args, **kwargs)

        method_checked.api_methods = tuple(methods)  # what tests/test_openapi.py checks
        # CSRF is checked in the endpoint (_csrf_refusal), where a body Django cannot
        # parse is a JSON 400 rather than the middleware's HTML page.
        return csrf_exempt(method_checked)

    return decorate


def _csrf_refusal(request):
    """Django's CSRF check, as its middleware makes it, on the header token only: the
    API takes JSON, so a form or multipart body is never parsed (a malformed one made
    the middleware answer an HTML 400 before the view)."""
    from django.middleware.csrf import CsrfViewMiddleware
    from django.utils.datastructures import MultiValueDict

    request._post, request._files = QueryDict(), MultiValueDict()
    return CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})


def _run(view, request, conn, args, kwargs, admin):
    requester = Requester(conn)
    try:
        if requester.refusal():
            raise forbidden(requester.refusal())
        if admin and not requester.admin:
            raise forbidden("for OMERO administrators only")
        # Checked once who may call is settled: a refused role learns nothing of its input.
        if len(request.META.get("QUERY_STRING", "")) > MAX_QUERY:
            raise ApiError(414, f"query string longer than {MAX_QUERY} characters")
        if any("\x00" in key or "\x00" in value
               for key, values in request.GET.lists() for value in values):
            raise bad(NUL_MESSAGE)
        if request.method == "POST":
            json_body(request)  # every POST's body is a JSON object, even where unused
        result = view(request, requester, *args, **kwargs)
    except ApiError as exc:
        return answer({"error": exc.message}, exc.status)
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return answer({"error": "the storage manager failed on this request; the "
                                "OMERO.web log says why"}, 500)
    finally:
        requester.close()
    if isinstance(result, HttpResponseBase):
        return result
    if isinstance(result, tuple):
        return answer(*result)
    return answer(result)


@_ApiLogin()
def unknown_endpoint(request, *args, **kwargs):
    """Every other URL under api/v1/: a JSON 404 (never an HTML page, never a redirect
    to add a slash), naming the endpoint the caller probably meant. Who may not call
    anything there is refused first (403), as on the endpoints: under admin/, everyone
    but full admins."""
    from django.urls import Resolver404, resolve

    requester = Requester(kwargs.pop("conn", None))
    try:
        refusal = requester.refusal()
        if refusal is None and "/api/v1/admin/" in request.path and not requester.admin:
            refusal = "for OMERO administrators only"
    finally:
        requester.close()
    if refusal:
        return answer({"error": refusal}, 403)
    message = f"no API endpoint at {request.path}"
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
            if match.func is not unknown_endpoint:
                message += f"; did you mean {request.path}/ (with the trailing slash)?"
        except Resolver404:
            pass
    return answer({"error": message + " (GET /storagemanager/api/v1/ lists the endpoints)"},
                  404)


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
                if requester.refusal():
                    raise forbidden(requester.refusal())
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

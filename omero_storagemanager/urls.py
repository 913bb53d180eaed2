"""URLs, mounted by OMERO.web under /<app label>/ (/storagemanager/).

URL names carry the app prefix so they never clash with OMERO.web's own. The JSON API
lives under api/v1/ and is described in docs/api.md.
"""
from django.urls import path, re_path, register_converter
from django.views.decorators.csrf import csrf_exempt

from .views import (admin, api, approvals, collection_page, jobs, openapi, pages, planner,
                    plugins)
from .views.common import unknown_endpoint


class _Id:
    """An OMERO or app id: ASCII digits that fit a bigint (Django's int takes any
    length, which the database then refuses)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return str(value)


register_converter(_Id, "id")

# [0-9], not \d: \d takes any script's digits ("Project:\u0664" is not Project:4).
_KEY = r"(?P<key>(?i:project|screen):[0-9]{1,18})"

urlpatterns = [
    # Pages of the Storage tab
    path("", pages.index, name="storagemanager_index"),
    path("collections/", pages.collections, name="storagemanager_collections"),
    path("statistics/", pages.statistics, name="storagemanager_statistics"),
    path("jobs/", pages.jobs, name="storagemanager_jobs"),
    path("admin/", pages.admin_settings, name="storagemanager_admin"),
    path("admin/locations/", pages.admin_locations, name="storagemanager_admin_locations"),
    path("admin/quotas/", pages.admin_quotas, name="storagemanager_admin_quotas"),
    path("admin/tasks/", pages.admin_tasks, name="storagemanager_admin_tasks"),
    path("admin/requests/", pages.admin_requests, name="storagemanager_admin_requests"),
    path("admin/planner/", pages.admin_planner, name="storagemanager_admin_planner"),
    re_path(r"^collection/" + _KEY + "/$", collection_page.collection_page,
            name="storagemanager_collection"),

    # JSON API v1
    path("api/v1/", api.root, name="storagemanager_api_root"),
    path("api/v1/status/", api.api_status, name="storagemanager_api_status"),
    path("api/v1/usage/", api.usage, name="storagemanager_api_usage"),
    path("api/v1/collections/", api.collections, name="storagemanager_api_collections"),
    re_path(r"^api/v1/collections/" + _KEY + "/$", api.collection,
            name="storagemanager_api_collection"),
    re_path(r"^api/v1/collections/" + _KEY + "/files/$", collection_page.files,
            name="storagemanager_api_collection_files"),
    re_path(r"^api/v1/collections/" + _KEY + "/history/$", collection_page.history,
            name="storagemanager_api_collection_history"),
    path("api/v1/actions/", api.actions, name="storagemanager_api_actions"),
    path("api/v1/statistics/", api.statistics, name="storagemanager_api_statistics"),
    path("api/v1/objects/<str:dtype>/<id:oid>/", plugins.objects,
         name="storagemanager_api_object"),
    path("api/v1/breakdown/", plugins.breakdown_view, name="storagemanager_api_breakdown"),
    path("api/v1/jobs/", jobs.jobs, name="storagemanager_api_jobs"),
    path("api/v1/jobs/<id:pk>/", jobs.job, name="storagemanager_api_job"),
    path("api/v1/jobs/<id:pk>/log/", jobs.job_log, name="storagemanager_api_job_log"),
    path("api/v1/jobs/<id:pk>/cancel/", jobs.job_cancel, name="storagemanager_api_job_cancel"),
    path("api/v1/jobs/<id:pk>/retry/", jobs.job_retry, name="storagemanager_api_job_retry"),
    path("api/v1/requests/", approvals.requests, name="storagemanager_api_requests"),
    path("api/v1/requests/<id:pk>/approve/", approvals.approve,
         name="storagemanager_api_request_approve"),
    path("api/v1/requests/<id:pk>/decline/", approvals.decline,
         name="storagemanager_api_request_decline"),
    path("api/v1/requests/<id:pk>/withdraw/", approvals.withdraw,
         name="storagemanager_api_request_withdraw"),
    # Admin API (OMERO administrators only)
    path("api/v1/admin/preferences/", admin.preferences_view,
         name="storagemanager_api_admin_preferences"),
    path("api/v1/admin/locations/", admin.locations, name="storagemanager_api_admin_locations"),
    path("api/v1/admin/locations/<id:pk>/", admin.location_edit,
         name="storagemanager_api_admin_location"),
    re_path(r"^api/v1/admin/locations/(?P<pk>[0-9]{1,18})/(?P<action>current|rescan|purge-cache|remove)/$",
            admin.location_action, name="storagemanager_api_admin_location_action"),
    path("api/v1/admin/quotas/", admin.quotas, name="storagemanager_api_admin_quotas"),
    path("api/v1/admin/schedules/", admin.schedules_view,
         name="storagemanager_api_admin_schedules"),
    path("api/v1/admin/schedules/<str:kind>/run/", admin.run_now,
         name="storagemanager_api_admin_run_now"),
    path("api/v1/admin/test-email/", admin.test_email, name="storagemanager_api_admin_test_email"),
    # Capacity planning (views/planner.py)
    path("api/v1/capacity/", planner.capacity_view, name="storagemanager_api_capacity"),
    path("api/v1/admin/planner/", planner.planner, name="storagemanager_api_admin_planner"),
    path("api/v1/admin/planner/queue/", planner.planner_queue,
         name="storagemanager_api_admin_planner_queue"),
    path("api/v1/openapi.json", openapi.openapi_json,
         name="storagemanager_api_openapi"),
    # Anything else under the API: a JSON 404, not OMERO.web's HTML page or a redirect.
    re_path(r"^api/v1/", csrf_exempt(unknown_endpoint), name="storagemanager_api_unknown"),
]

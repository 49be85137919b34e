from django.http import JsonResponse
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from flashsale.errors import json_error


def health(request):
    """Liveness: the process answers. No database, no cache, no auth."""
    return JsonResponse({"success": True, "message": "ok", "data": {"status": "ok"}})


class ApiNotFound(APIView):
    """Unknown paths under /api/ answer in the API's error shape, whatever the method."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def initial(self, request, *args, **kwargs):
        raise NotFound()


def server_error(request):
    """Last-resort 500 for errors outside DRF views: never a traceback, JSON for API clients."""
    if request.path.startswith("/api/"):
        return json_error(500, "internal_error", "An unexpected error occurred.")
    from django.views.defaults import server_error as html_server_error

    return html_server_error(request)


def page_not_found(request, exception):
    if request.path.startswith("/api/"):
        return json_error(404, "not_found", "Not found.")
    from django.views.defaults import page_not_found as html_page_not_found

    return html_page_not_found(request, exception)

from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from core.error_codes import ErrorCode
from core.errors import json_error


class ApiNotFound(APIView):
    """Unknown paths under /api/ answer in the API's error shape, whatever the method."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def initial(self, request, *args, **kwargs):
        raise NotFound()


def server_error(request):
    """Last-resort 500 for errors outside DRF views: never a traceback, JSON for API clients."""
    if request.path.startswith("/api/"):
        return json_error(ErrorCode.INTERNAL_ERROR)
    from django.views.defaults import server_error as html_server_error

    return html_server_error(request)


def bad_request(request, exception):
    """400 for a request Django found suspicious outside DRF views (DEBUG off): JSON under /api/."""
    if request.path.startswith("/api/"):
        return json_error(ErrorCode.BAD_REQUEST)
    from django.views.defaults import bad_request as html_bad_request

    return html_bad_request(request, exception)


def page_not_found(request, exception):
    if request.path.startswith("/api/"):
        return json_error(ErrorCode.NOT_FOUND)
    from django.views.defaults import page_not_found as html_page_not_found

    return html_page_not_found(request, exception)

#!/usr/bin/env python3
"""CPU each middleware class costs on one API request, in-process, without the rest of the stack.

    .venv/bin/python bench/middleware_cost.py                       # every class in settings.MIDDLEWARE
    .venv/bin/python bench/middleware_cost.py csp.middleware.CSPMiddleware core.middleware.ApiAwareCSPMiddleware

Each class wraps a view that returns a small JSON response; it is called --requests times with a
token-authenticated JSON POST to the purchase path, without Origin, best of --rounds. The figure
includes building that response (the bare-response cost is what the cheapest classes show).
No database, no cache: the sale gate's fast path is left out (it asks the cache).
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("classes", nargs="*", help="dotted paths; default: settings.MIDDLEWARE minus the fast path")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.update(
        DEBUG="false",
        REQUEST_LOG="true",
        RATELIMIT_ENABLE="false",
        SECRET_KEY="bench-only-secret-key-abcdefghijklmnopqrstuvwxyz0123456789",
        ALLOWED_HOSTS="testserver",
    )
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")
    sys.path.insert(0, str(PROJECT_DIR))
    import django

    django.setup()
    from django.conf import settings
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.utils.module_loading import import_string

    # The request log writes nowhere: its own work is measured, not the terminal's.
    request_log = logging.getLogger("flashsale.request")
    request_log.handlers, request_log.propagate = [logging.NullHandler()], False
    factory = RequestFactory()

    def view(request):
        return HttpResponse(b'{"success":true}', content_type="application/json")

    classes = args.classes or [name for name in settings.MIDDLEWARE if "fastpath" not in name]
    for name in classes:
        middleware = import_string(name)(view)
        best = float("inf")
        for _ in range(args.rounds):
            requests = [
                factory.post(
                    "/api/v1/flashsales/purchase",
                    data=b'{"saleId":1,"quantity":1}',
                    content_type="application/json",
                    HTTP_AUTHORIZATION="Token 0123456789abcdef",
                )
                for _ in range(args.requests)
            ]
            started = time.process_time()
            for request in requests:
                middleware(request)
            best = min(best, (time.process_time() - started) / args.requests * 1e6)
        print(f"{name:58} {best:6.1f} us")


if __name__ == "__main__":
    main()

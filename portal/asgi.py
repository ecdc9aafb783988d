"""ASGI entry point. The key-authenticated model API gets a lean handler of its own.

`/query` and `/v1/...` take no session, cookie, CSRF, CSP or sign-in, so their requests skip
the page middleware (each of which costs a hop to a thread under ASGI) and keep only CORS.
Same URLconf, same views; everything else goes through the full Django stack.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

django_application = get_asgi_application()

from portal.lean import ModelApiHandler, is_model_api  # noqa: E402 - needs Django set up

model_api_application = ModelApiHandler()


async def application(scope, receive, send):
    if scope["type"] == "http" and is_model_api(scope["path"]):
        return await model_api_application(scope, receive, send)
    return await django_application(scope, receive, send)

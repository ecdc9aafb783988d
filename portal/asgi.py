"""ASGI entry point: the model API (`/query`, `/v1/...`) is its own Starlette app; Django serves the rest.

Lifespan events go to the model API, which closes its connections on shutdown.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

django_application = get_asgi_application()

from proxy.app import model_api_app, serves  # noqa: E402 - needs Django set up

model_api_application = model_api_app()


async def application(scope, receive, send):
    if scope["type"] == "lifespan" or serves(scope.get("path", "")):
        return await model_api_application(scope, receive, send)
    return await django_application(scope, receive, send)

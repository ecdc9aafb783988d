"""ASGI entry point: the model API (`/query`, `/v1/...`) is its own Starlette app; Django serves the rest.

Lifespan events go to the model API, which closes its connections on shutdown.

What is loaded here lives as long as the process: Django, the apps, their URLs and views, and the
libraries, about 120,000 objects that the garbage collector would otherwise go through in each of
its full passes. Under load those came every two seconds or so and took 60-90 ms each, every
request of the worker waiting (the model API's p99 at 32 connections). Frozen once loaded
(`gc.freeze`), they are left out, and a full pass takes 1-2 ms.
"""

import gc
import os
from importlib import import_module

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

django_application = get_asgi_application()

from proxy.app import model_api_app, serves  # noqa: E402 - needs Django set up

model_api_application = model_api_app()


async def application(scope, receive, send):
    if scope["type"] == "lifespan" or serves(scope.get("path", "")):
        return await model_api_application(scope, receive, send)
    return await django_application(scope, receive, send)


# The pages' URLs and views, which Django would load at the first page request: about 27 MB a
# worker, which a worker that serves pages spends anyway, and then they are frozen too.
import_module(settings.ROOT_URLCONF)
gc.collect()  # what startup left as garbage goes first: frozen, it would stay
gc.freeze()

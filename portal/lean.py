"""The model API's own ASGI handler: Django's, with only what that API needs.

`/query` and `/v1/...` use no session, cookie, CSRF, CSP or sign-in. Under ASGI each page
middleware, the request_started/request_finished signals and the per-request thread each cost
a hop between the event loop and a thread: most of a model API request's CPU time (measured
with `make bench`). Here a request keeps only CORS, and the views do their database work
through keys.db.run_db, which manages its own connections.
"""

import asyncio
import contextlib
import re

from corsheaders.middleware import CorsMiddleware
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

MODEL_API_PATH = re.compile(r"^/(query|v1/.*)$")


def is_model_api(path: str) -> bool:
    return MODEL_API_PATH.match(path) is not None


class ModelApiHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # No view, template-response or exception middleware; the views are all async.
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        self._middleware_chain = convert_exception_to_response(CorsMiddleware(handler))

    async def __call__(self, scope, receive, send) -> None:
        # No per-request ThreadSensitiveContext: nothing here runs on a request's own thread.
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send) -> None:
        """ASGIHandler.handle without the request_started/request_finished signals: their
        receivers manage the request thread's database connections, which these views do not use."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def respond():
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client went away meanwhile
                await self.send_response(response, send)
            return response

        # As Django does: a client that disconnects cancels its request (and its stream).
        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        responder = asyncio.create_task(respond())
        await asyncio.wait([listener, responder], return_when=asyncio.FIRST_COMPLETED)
        for task in (listener, responder):
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                await task
        if not responder.cancelled():
            responder.result().close()
        body_file.close()

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
        """ASGIHandler.handle, minus what these views do not need: the request_started and
        request_finished signals (their receivers manage a request thread's database connection)
        and, for answers that are not streams, a task listening for the client to disconnect."""
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

        response = await self.run_get_response(request)
        if response.streaming:
            # As Django does: a client that disconnects while a stream is sent cancels it.
            listener = asyncio.create_task(self.listen_for_disconnect(receive))
            sender = asyncio.create_task(self.send_response(response, send))
            await asyncio.wait([listener, sender], return_when=asyncio.FIRST_COMPLETED)
            for task in (listener, sender):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
        else:
            await self.send_response(response, send)
        response.close()
        body_file.close()

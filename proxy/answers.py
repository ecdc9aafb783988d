"""The model API's refusals in its two styles: `/query`'s `{"message": ...}` and OpenAI's `{"error": {...}}`.

Each style answers the same questions, so the views never build an error body themselves.
"""

import json
from http import HTTPStatus

from starlette.responses import JSONResponse, Response

from proxy.admission import Admission, Outcome
from proxy.db import QuotaStoreUnavailable
from proxy.upstreams import UpstreamError
from proxy.validation import InvalidRequest

ENDPOINT_PATHS = {
    "chat": "chat/completions", "completions": "completions", "embeddings": "embeddings", "responses": "responses",
}  # fmt: skip


# Which of a plan's limits refused a request, as OpenAI's error `type` names it.
LIMIT_TYPES = {Outcome.LIMITED: "requests", Outcome.TOKENS_LIMITED: "tokens", Outcome.BUDGET_LIMITED: "budget"}


class QueryAnswers:
    """`/query`: the seed's plain shape."""

    @staticmethod
    def message(status: int, text: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"message": text}, status_code=status, headers=headers)

    def not_admitted(self, admission: Admission) -> JSONResponse:
        headers = admission.headers()
        match admission.outcome:
            case Outcome.FORBIDDEN:
                return self.message(HTTPStatus.FORBIDDEN, "Forbidden")
            case Outcome.MODEL_NOT_FOUND:
                return self.message(HTTPStatus.NOT_FOUND, "Model not found")
            case Outcome.INVALID:
                return self.invalid(admission.problem)
            case Outcome.THROTTLED:
                return self.message(HTTPStatus.TOO_MANY_REQUESTS, "Too Many Requests", headers)
            case _:
                return self.message(HTTPStatus.TOO_MANY_REQUESTS, "Limit Exceeded", headers)

    def forbidden(self) -> JSONResponse:
        return self.message(HTTPStatus.FORBIDDEN, "Forbidden")

    def unavailable(self, exc: QuotaStoreUnavailable) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)}
        return self.message(HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable", headers)

    def internal_error(self, request_id: str) -> JSONResponse:
        text = f"Internal Server Error (request id {request_id})."
        return self.message(HTTPStatus.INTERNAL_SERVER_ERROR, text)

    def bad_gateway(self) -> JSONResponse:
        return self.message(HTTPStatus.BAD_GATEWAY, "Bad Gateway: the model did not answer. Nothing was counted.")

    def invalid(self, exc: InvalidRequest) -> JSONResponse:
        return self.message(exc.status, exc.message)


class OpenAIAnswers:
    """`/v1`: OpenAI's error shape, which the official SDKs turn into their own exception types."""

    @staticmethod
    def error(
        status: int, text: str, *, type_: str, code: str | None, param: str | None = None, headers: dict | None = None
    ) -> JSONResponse:
        body = {"error": {"message": text, "type": type_, "param": param, "code": code}}
        return JSONResponse(body, status_code=status, headers=headers)

    def not_admitted(self, admission: Admission) -> JSONResponse:
        headers = admission.headers()
        match admission.outcome:
            case Outcome.FORBIDDEN:
                return self.forbidden()
            case Outcome.INVALID:
                return self.invalid(admission.problem)
            case Outcome.MODEL_NOT_FOUND if admission.serves:
                text = (
                    f"This model does not serve /v1/{ENDPOINT_PATHS[admission.endpoint]}; "
                    f"it serves {', '.join(ENDPOINT_PATHS[e] for e in admission.serves)}. GET /v1/models lists them."
                )
                return self.error(HTTPStatus.NOT_FOUND, text, type_="invalid_request_error", code="model_not_found")
            case Outcome.MODEL_NOT_FOUND:
                text = "Model not found, or not one this key's plan may use. GET /v1/models lists them."
                return self.error(HTTPStatus.NOT_FOUND, text, type_="invalid_request_error", code="model_not_found")
            case Outcome.THROTTLED:
                text = "Too Many Requests: this plan allows a limited number of requests per second."
                return self.error(
                    HTTPStatus.TOO_MANY_REQUESTS, text, type_="requests", code="rate_limit_exceeded", headers=headers
                )
            case _:
                type_ = LIMIT_TYPES[admission.outcome]
                return self.error(
                    HTTPStatus.TOO_MANY_REQUESTS, admission.refusal_text, type_=type_, code="rate_limit_exceeded",
                    headers=headers,
                )  # fmt: skip

    def forbidden(self) -> JSONResponse:
        text = "Incorrect or missing API key. Send it as `Authorization: Bearer <key>` or `x-api-key`."
        return self.error(HTTPStatus.UNAUTHORIZED, text, type_="invalid_request_error", code="invalid_api_key")

    def unavailable(self, exc: QuotaStoreUnavailable) -> JSONResponse:
        text = "The quota store is unavailable; try again shortly."
        return self.error(
            HTTPStatus.SERVICE_UNAVAILABLE, text, type_="server_error", code="service_unavailable",
            headers={"Retry-After": str(exc.retry_after)},
        )  # fmt: skip

    def internal_error(self, request_id: str) -> JSONResponse:
        text = f"Tollgate failed to answer this request; its log names it by request id {request_id}."
        return self.error(HTTPStatus.INTERNAL_SERVER_ERROR, text, type_="server_error", code="internal_error")

    def upstream_client_error(self, exc: UpstreamError) -> Response:
        """The model refused the request's content (400, 404, 413, 422): its own words, not counted."""
        try:
            if isinstance(json.loads(exc.body)["error"], dict):  # OpenAI's shape already: as it came
                return Response(exc.body, status_code=exc.status, media_type="application/json")
        except (ValueError, KeyError, TypeError):
            pass
        text = exc.body.decode(errors="replace")[:500] or f"The model refused the request ({exc.status})."
        return self.error(exc.status, text, type_="invalid_request_error", code="upstream_refused")

    def bad_gateway(self) -> JSONResponse:
        text = "The model did not answer. The request was not counted."
        return self.error(HTTPStatus.BAD_GATEWAY, text, type_="server_error", code="upstream_error")

    def invalid(self, exc: InvalidRequest) -> JSONResponse:
        return self.error(exc.status, exc.message, type_="invalid_request_error", code=exc.code, param=exc.param)


QUERY = QueryAnswers()
OPENAI = OpenAIAnswers()

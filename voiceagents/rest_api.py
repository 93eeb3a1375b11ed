"""The HTTP API for integrations, built on django-ninja: the OpenAPI schema at
/api/schema, browsable docs at /api/docs (served from ninja's own static files: no CDN).

Every request needs a bearer token (admin → API tokens) whose scopes cover it:
  read calls        list and read calls, agents, tools and numbers
  read transcripts  also what was said in calls
  write             create, change and delete; place and end calls
Errors are {"error": "…"} with the status (400 with "fields" for a bad body, 401 with
WWW-Authenticate: Bearer, 403, 404, 409). The calls endpoints answer as they always have.
"""

from django.http import Http404, HttpRequest, JsonResponse
from django.utils import timezone
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from voiceagents.models import ApiToken

SCOPE_NAMES = {"read_calls": "read calls", "read_transcripts": "read transcripts", "write": "write"}


class TokenAuth(HttpBearer):
    """A valid, unexpired token (else 401) with `scope` (else 403)."""

    def __init__(self, scope: str):
        super().__init__()
        self.scope = scope
        self.openapi_description = f"An API token with the {SCOPE_NAMES[scope]} scope."

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        api_token = ApiToken.find_active(token.strip())
        if api_token is None:
            return None
        if not api_token.allows(self.scope):
            raise HttpError(403, f"this API token does not have the {self.scope} scope")
        ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=timezone.now())
        return api_token


READ = TokenAuth("read_calls")
WRITE = TokenAuth("write")

api = NinjaAPI(
    title="Voice agents API",
    version="1",
    description=__doc__,
    urls_namespace="api",
    openapi_url="/schema",
    docs_url="/docs",
    auth=READ,
)


@api.exception_handler(AuthenticationError)
def unauthorised(request, exc):
    response = JsonResponse({"error": "a valid, unexpired API token is required"}, status=401)
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(HttpError)
def refused(request, exc):
    return JsonResponse({"error": str(exc)}, status=exc.status_code)


@api.exception_handler(Http404)
def not_found(request, exc):
    return JsonResponse({"error": "not found"}, status=404)


@api.exception_handler(ValidationError)
def invalid(request, exc):
    # loc is ("body", "payload", "voice") or ("query", "limit"): keep what names the field.
    fields = {
        ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path", "payload"))
        or "body": e["msg"]
        for e in exc.errors
    }
    summary = "; ".join(f"{name}: {message}" for name, message in fields.items())
    return JsonResponse({"error": summary, "fields": fields}, status=400)


def register_routes() -> None:
    from calls.api_routes import router as calls_router
    from voiceagents.api_resources import agents, numbers, tools

    api.add_router("/calls", calls_router)
    api.add_router("/agents", agents)
    api.add_router("/tools", tools)
    api.add_router("/numbers", numbers)


register_routes()

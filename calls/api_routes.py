"""/api/calls: list, read, place (outbound) and end calls. The answers are built by
calls/api.py, unchanged from the hand-written API they replace."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema

from calls import api as calls_api
from calls.models import Call
from calls.views import call_group
from voiceagents.rest_api import WRITE

router = Router(tags=["calls"])


class Context(Schema):
    name: str | None = None
    notes: str | None = None


class PlaceCall(Schema):
    to: str
    agent: int | str
    from_: str | None = Field(None, alias="from")
    context: Context | None = None


@router.get("/", summary="Calls, newest first")
def list_calls(
    request: HttpRequest,
    limit: str | None = None,
    offset: str | None = None,
    q: str | None = None,
    agent: int | None = None,
    status: str | None = None,
    direction: str | None = None,
    completion_reason: str | None = None,
    outcome: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
):
    """`limit` 0-200 (default 50), `offset` from 0: {"count", "results"}. Filters as on
    the console's call list: `q` words said, a caller's name or number; `agent` id;
    `status`; `direction` (inbound, outbound, browser); `completion_reason`; `outcome`
    as key=value; `date_from`, `date_to` (YYYY-MM-DD)."""
    return calls_api.list_calls(request)


@router.post(
    "/",
    auth=WRITE,
    summary="Place an outbound call",
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": PlaceCall.model_json_schema()}},
            "required": True,
        }
    },
)
def place_call(request: HttpRequest):
    """{"to": "+1555…", "agent": id or name, "from": one of the agent's numbers (the
    first by default), "context": {"name", "notes"}} → 201 with the call."""
    return calls_api.place_call_from_api(request)


@router.get("/{sid}/", summary="One call, with what was said (read transcripts scope)")
def get_call(request: HttpRequest, sid: str):
    return calls_api.call_detail_view(request, sid)


@router.post("/{sid}/hang-up", auth=WRITE, summary="End a live call")
def hang_up(request: HttpRequest, sid: str):
    """202 while the call is live (the agent's process ends it); 409 once it has ended."""
    call = get_object_or_404(Call, sid=sid)
    if call.ended_at is not None:
        return JsonResponse({"error": "the call has already ended"}, status=409)
    async_to_sync(get_channel_layer().group_send)(
        call_group(call.sid), {"type": "call.hangup", "by": f"API token {request.auth.name}"}
    )
    return JsonResponse({"sid": call.sid, "status": "hang-up requested"}, status=202)

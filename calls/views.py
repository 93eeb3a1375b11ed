"""Staff pages: recent calls, and one call's live transcript with a hang-up button."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from calls.models import Call

log = logging.getLogger(__name__)


def call_group(call_sid: str) -> str:
    """Channel-layer group of the consumer holding a call, in whichever process it runs."""
    return f"call.{call_sid}"


@staff_member_required
def call_list(request: HttpRequest) -> HttpResponse:
    calls = Call.objects.select_related("agent").order_by("-started_at", "-id")
    page = Paginator(calls, 50).get_page(request.GET.get("page"))
    return render(request, "calls/call_list.html", {"page": page})


@staff_member_required
def call_detail(request: HttpRequest, sid: str) -> HttpResponse:
    call = get_object_or_404(Call.objects.select_related("agent"), sid=sid)
    return render(request, "calls/call_detail.html", {"call": call, "turns": call.turns.all()})


@staff_member_required
def call_turns(request: HttpRequest, sid: str) -> HttpResponse:
    """The transcript fragment the live page polls; turns live in the shared database."""
    call = get_object_or_404(Call, sid=sid)
    return render(request, "calls/_turns.html", {"call": call, "turns": call.turns.all()})


@staff_member_required
@require_POST
def hang_up(request: HttpRequest, sid: str) -> HttpResponse:
    call = get_object_or_404(Call, sid=sid)
    if call.ended_at is None:
        async_to_sync(get_channel_layer().group_send)(
            call_group(call.sid), {"type": "call.hangup", "by": request.user.get_username()}
        )
        log.info("call %s: hang-up requested by %s", call.sid, request.user.get_username())
        # Worded to stay true on the next page, which may already show the call ended.
        messages.info(request, "Hang-up requested.")
    else:
        messages.info(request, "This call had already ended.")
    return redirect("call-detail", sid=call.sid)

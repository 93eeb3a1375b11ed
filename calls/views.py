"""Staff pages: the call list with search, one call's live and post-call transcripts, and
the hang-up request. Every view checks Django model permissions (voiceagents.access)."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from calls.analytics import PERIODS, analytics
from calls.forms import CallFromListForm, PlaceCallForm
from calls.models import Call
from calls.outbound import CallNotPlaced, place_call
from transcripts.review import review_context
from transcripts.search import CallFilterForm, filter_calls
from voiceagents.access import staff_permission_required
from voiceagents.models import Agent

log = logging.getLogger(__name__)
PAGE_SIZE = 50


def call_group(call_sid: str) -> str:
    """Channel-layer group of the consumer holding a call, in whichever process it runs."""
    return f"call.{call_sid}"


@staff_permission_required("calls.view_call")
def call_list(request: HttpRequest) -> HttpResponse:
    form = CallFilterForm(request.GET)
    page = Paginator(filter_calls(form), PAGE_SIZE).get_page(request.GET.get("page"))
    filters = request.GET.copy()
    filters.pop("page", None)
    return render(
        request,
        "calls/call_list.html",
        {
            "page": page,
            "form": form,
            "filters": filters.urlencode(),
            "live": request.GET.get("status") == Call.Status.IN_PROGRESS,
            "call_form": CallFromListForm()
            if request.user.has_perms(("voiceagents.view_agent", "calls.place_call"))
            else None,
        },
    )


@staff_permission_required("calls.view_call")
def call_detail(request: HttpRequest, sid: str) -> HttpResponse:
    call = get_object_or_404(Call.objects.select_related("agent"), sid=sid)
    context = {"call": call, "turns": call.turns.all()} | review_context(call, request.user)
    return render(request, "calls/call_detail.html", context)


@staff_permission_required("calls.view_call")
def call_turns(request: HttpRequest, sid: str) -> HttpResponse:
    """The transcript fragment the live page polls; turns live in the shared database."""
    call = get_object_or_404(Call, sid=sid)
    return render(request, "calls/_turns.html", {"call": call, "turns": call.turns.all()})


@staff_permission_required("calls.view_call", "calls.hang_up_call")
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


@staff_permission_required("voiceagents.view_agent", "calls.place_call")
@require_POST
def place_call_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The agent page's "Call someone" form."""
    agent = get_object_or_404(Agent, pk=pk, archived_at__isnull=True)
    return place_from_form(request, PlaceCallForm(request.POST, agent=agent), agent, agent)


@staff_permission_required("voiceagents.view_agent", "calls.place_call")
@require_POST
def place_call_from_list(request: HttpRequest) -> HttpResponse:
    """The call list's "Call someone" form: the agent chosen in it."""
    form = CallFromListForm(request.POST)
    agent = form.cleaned_data["agent"] if form.is_valid() else None
    return place_from_form(request, form, agent, "call-list")


def place_from_form(request: HttpRequest, form, agent, back) -> HttpResponse:
    if not form.is_valid():
        for field, errors in form.errors.items():
            label = form.fields[field].label if field in form.fields else field
            messages.error(request, f"{label}: {' '.join(errors)}")
        return redirect(back)
    if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
        messages.error(request, "Set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN to place calls.")
        return redirect(back)
    try:
        call = place_call(
            agent,
            form.cleaned_data["to"],
            form.cleaned_data["from_number"],
            form.context(),
            request.user,
        )
    except CallNotPlaced as exc:
        messages.error(request, f"Twilio did not place the call: {exc}")
        return redirect(back)
    messages.success(request, f"Calling {call.to_number}…")
    return redirect("call-detail", call.sid)


@staff_permission_required("calls.view_call")
def analytics_page(request: HttpRequest) -> HttpResponse:
    """Per agent (?agent=<id>) or overall, over the last 7, 30 or 90 days (?days=)."""
    days = int(request.GET.get("days")) if request.GET.get("days") in {"7", "30", "90"} else 30
    agent = None
    if request.GET.get("agent", "").isdigit():
        agent = get_object_or_404(Agent, pk=int(request.GET["agent"]))
    figures = analytics(days, agent)
    chart = {
        "days": [d["day"].isoformat() for d in figures.per_day],
        "answered": [d["answered"] for d in figures.per_day],
        "unanswered": [d["calls"] - d["answered"] for d in figures.per_day],
        "failed": [d["failed"] for d in figures.per_day],
        "cost": [float(round(d["cost"], 4)) for d in figures.per_day],
    }
    context = {
        "figures": figures,
        "agent": agent,
        "agents": Agent.objects.filter(archived_at__isnull=True),
        "periods": PERIODS,
        "chart": chart,
    }
    return render(request, "calls/analytics.html", context)

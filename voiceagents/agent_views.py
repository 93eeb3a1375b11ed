"""The console's agent pages: the list, one agent (its numbers, recent calls and
versions), create, edit, duplicate, archive, and restoring a version. Every change is
kept as a version (voiceagents.versions). Permissions are Django's agent permissions,
as in the admin."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Avg, Count, Max, Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from calls.forms import PlaceCallForm
from voiceagents.access import staff_permission_required
from voiceagents.agent_form import AgentForm, model_table
from voiceagents.models import Agent, Voice
from voiceagents.versions import record_version, restore
from voiceagents.voice_preview import PreviewFailed, preview

RECENT_CALLS = 10


def agents_with_activity(archived: bool):
    week_ago = timezone.now() - timedelta(days=7)
    this_week = Q(calls__started_at__gte=week_ago)
    return (
        Agent.objects.filter(archived_at__isnull=not archived)
        .annotate(
            calls_this_week=Count("calls", filter=this_week),
            average_duration_s=Avg("calls__duration_s", filter=this_week),
            last_call_at=Max("calls__started_at"),
        )
        .prefetch_related("phone_numbers")
        .order_by("name")
    )


@staff_permission_required("voiceagents.view_agent")
def agent_list(request: HttpRequest) -> HttpResponse:
    archived = request.GET.get("archived") == "1"
    return render(
        request,
        "agents/agent_list.html",
        {"agents": agents_with_activity(archived), "archived": archived},
    )


@staff_permission_required("voiceagents.view_agent")
def agent_detail(request: HttpRequest, pk: int) -> HttpResponse:
    agent = get_object_or_404(Agent, pk=pk)
    can_view_calls = request.user.has_perm("calls.view_call")
    context = {
        "agent": agent,
        "numbers": agent.phone_numbers.all(),
        "webhook_url": settings.PUBLIC_BASE_URL + "/twilio/voice",
        "calls": agent.calls.order_by("-started_at")[:RECENT_CALLS] if can_view_calls else [],
        "can_view_calls": can_view_calls,
        "versions": agent.versions.select_related("created_by")[:20],
        "tools": agent.tools.all(),
        "place_call_form": PlaceCallForm(agent=agent),
    }
    return render(request, "agents/agent_detail.html", context)


def edit_page(request: HttpRequest, form: AgentForm, agent: Agent | None) -> HttpResponse:
    return render(
        request, "agents/agent_form.html", {"form": form, "agent": agent, "models": model_table()}
    )


@staff_permission_required("voiceagents.view_agent", "voiceagents.add_agent")
def agent_create(request: HttpRequest) -> HttpResponse:
    form = AgentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            agent = form.save()
            record_version(agent, request.user)
        messages.success(request, f"Agent {agent.name} created.")
        return redirect(agent)
    return edit_page(request, form, None)


@staff_permission_required("voiceagents.view_agent", "voiceagents.change_agent")
def agent_edit(request: HttpRequest, pk: int) -> HttpResponse:
    agent = get_object_or_404(Agent, pk=pk)
    form = AgentForm(request.POST or None, instance=agent)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            agent = form.save()
            version = record_version(agent, request.user)
        messages.success(request, f"Saved as version {version.number}.")
        return redirect(agent)
    return edit_page(request, form, agent)


@staff_permission_required("voiceagents.view_agent", "voiceagents.add_agent")
@require_POST
def agent_duplicate(request: HttpRequest, pk: int) -> HttpResponse:
    original = get_object_or_404(Agent, pk=pk)
    tools = list(original.tools.all())
    with transaction.atomic():
        copy = Agent.objects.get(pk=pk)
        copy.pk = None
        copy.name = f"{original.name} (copy)"[:100]
        copy.archived_at = None
        copy.completion_webhook_secret = ""  # a new one is made if it has a webhook
        copy.save()
        copy.tools.set(tools)
        record_version(copy, request.user, note=f"duplicated from {original.name}")
    messages.success(request, f"{copy.name} created: rename it and change what differs.")
    return redirect("agent-edit", copy.pk)


@staff_permission_required("voiceagents.view_agent", "voiceagents.change_agent")
@require_POST
def agent_archive(request: HttpRequest, pk: int) -> HttpResponse:
    agent = get_object_or_404(Agent, pk=pk)
    if agent.archived_at is not None:
        agent.archived_at = None
        agent.save(update_fields=["archived_at"])
        messages.success(request, f"{agent.name} is active again.")
        return redirect(agent)
    numbers = ", ".join(n.number for n in agent.phone_numbers.all())
    if numbers:
        messages.error(
            request,
            f"{agent.name} still answers {numbers}: give those numbers another agent first, "
            "so no caller reaches an archived agent.",
        )
        return redirect(agent)
    agent.archived_at = timezone.now()
    agent.save(update_fields=["archived_at"])
    messages.success(request, f"{agent.name} archived. Its calls and versions are kept.")
    return redirect("agent-list")


@staff_permission_required("voiceagents.view_agent", "voiceagents.change_agent")
@require_POST
def agent_restore_version(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    agent = get_object_or_404(Agent, pk=pk)
    version = get_object_or_404(agent.versions, number=number)
    try:
        new = restore(agent, version, request.user)
    except ValidationError as exc:
        messages.error(request, f"Version {number} cannot be restored: {'; '.join(exc.messages)}")
        return redirect(agent)
    messages.success(request, f"Version {number} restored as version {new.number}.")
    return redirect(agent)


@staff_permission_required("voiceagents.view_agent")
def voice_preview(request: HttpRequest, voice: str) -> HttpResponse:
    if voice not in Voice.values:
        raise Http404("no such voice")
    try:
        path = preview(voice)
    except PreviewFailed as exc:
        return HttpResponse(f"No preview of {voice}: {exc}", status=502, content_type="text/plain")
    response = FileResponse(path.open("rb"), content_type="audio/wav")
    response["Cache-Control"] = "private, max-age=86400"
    return response

"""The console's home page: live calls, today's calls and the agents, each shown to
staff allowed to see it."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from calls.models import Call
from voiceagents.access import staff_permission_required
from voiceagents.agent_views import agents_with_activity


@staff_permission_required()  # any staff member; each part checks its own permission
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    context = {}
    if user.has_perm("calls.view_call"):
        midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
        calls = Call.objects.select_related("agent")
        context["live_calls"] = calls.filter(status=Call.Status.IN_PROGRESS)[:50]
        context["calls_today"] = calls.filter(started_at__gte=midnight).count()
        context["recent_calls"] = calls.order_by("-started_at")[:10]
    if user.has_perm("voiceagents.view_agent"):
        context["agents"] = agents_with_activity(archived=False)
    return render(request, "home.html", context)

from django.contrib import admin
from django.urls import include, path

from calls.views import place_call_view
from voiceagents import agent_views, rest_api, tool_views
from voiceagents.health import healthz
from voiceagents.home import home

admin.site.site_header = "Voice agents"
admin.site.site_title = "Voice agents"
admin.site.site_url = "/"  # the admin's "View site" link: the console

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/", rest_api.api.urls),
    path("", home, name="home"),
    path("agents/", agent_views.agent_list, name="agent-list"),
    path("tools/", tool_views.tool_list, name="tool-list"),
    path("tools/new", tool_views.tool_create, name="tool-create"),
    path("tools/<int:pk>/", tool_views.tool_edit, name="tool-edit"),
    path("tools/<int:pk>/test", tool_views.tool_test, name="tool-test"),
    path("agents/new", agent_views.agent_create, name="agent-create"),
    path("agents/voices/<str:voice>.wav", agent_views.voice_preview, name="voice-preview"),
    path("agents/<int:pk>/", agent_views.agent_detail, name="agent-detail"),
    path("agents/<int:pk>/edit", agent_views.agent_edit, name="agent-edit"),
    path("agents/<int:pk>/duplicate", agent_views.agent_duplicate, name="agent-duplicate"),
    path("agents/<int:pk>/archive", agent_views.agent_archive, name="agent-archive"),
    path("agents/<int:pk>/call", place_call_view, name="agent-place-call"),
    path(
        "agents/<int:pk>/versions/<int:number>/restore",
        agent_views.agent_restore_version,
        name="agent-restore-version",
    ),
    # Before calls.urls: "calls/export.csv" would otherwise match "calls/<sid>/".
    path("", include("transcripts.urls")),
    path("", include("calls.urls")),
]

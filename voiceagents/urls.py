from django.contrib import admin
from django.urls import include, path

from voiceagents.health import healthz

admin.site.site_header = "Voice agents"
admin.site.site_title = "Voice agents"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("calls.urls")),
]

from django.contrib import admin
from django.urls import include, path

from voiceagents.health import healthz

admin.site.site_header = "Voice agents"
admin.site.site_title = "Voice agents"
admin.site.site_url = "/calls/"  # the admin's "View site" link: the staff call pages

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    # Before calls.urls: "calls/export.csv" would otherwise match "calls/<sid>/".
    path("", include("transcripts.urls")),
    path("", include("calls.urls")),
]

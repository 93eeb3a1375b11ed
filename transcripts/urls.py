from django.urls import path

from transcripts import views, webhooks

urlpatterns = [
    path("twilio/recording", webhooks.recording_status, name="twilio-recording"),
    path("calls/export.csv", views.export_csv, name="calls-export-csv"),
    path("calls/<str:sid>/recording", views.recording_audio, name="call-recording"),
    path("calls/<str:sid>/rerun", views.rerun, name="call-rerun"),
    path("calls/<str:sid>/transcript.txt", views.transcript_text, name="call-transcript-txt"),
    path("calls/<str:sid>/export.json", views.export_json, name="call-export-json"),
]

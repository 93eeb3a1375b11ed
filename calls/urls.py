from django.urls import path

from calls import api, webhooks

urlpatterns = [
    path("twilio/voice", webhooks.incoming_call, name="twilio-voice"),
    path("twilio/stream-ended", webhooks.stream_ended, name="twilio-stream-ended"),
    path("api/calls/", api.call_list, name="api-calls"),
    path("api/calls/<str:sid>/", api.call_detail_view, name="api-call"),
]

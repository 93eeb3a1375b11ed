from django.urls import path

from calls import outbound_webhooks, views, webhooks

urlpatterns = [
    path("twilio/voice", webhooks.incoming_call, name="twilio-voice"),
    path("twilio/stream-ended", webhooks.stream_ended, name="twilio-stream-ended"),
    path(
        "twilio/outbound-answer",
        outbound_webhooks.outbound_answer,
        name="twilio-outbound-answer",
    ),
    path("twilio/call-status", outbound_webhooks.call_status, name="twilio-call-status"),
    path("calls/", views.call_list, name="call-list"),
    path("calls/place", views.place_call_from_list, name="call-place"),
    path("analytics/", views.analytics_page, name="analytics"),
    path("calls/<str:sid>/", views.call_detail, name="call-detail"),
    path("calls/<str:sid>/turns", views.call_turns, name="call-turns"),
    path("calls/<str:sid>/hang-up", views.hang_up, name="call-hang-up"),
]

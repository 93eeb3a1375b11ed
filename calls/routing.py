from django.urls import path

from calls.consumers import MediaStreamConsumer

websocket_urlpatterns = [
    path("twilio/stream/<str:token>", MediaStreamConsumer.as_asgi()),
]

from django.apps import AppConfig


class VoiceAgentsConfig(AppConfig):
    name = "voiceagents"
    verbose_name = "Voice agents"

"""Plain helpers that build rows and signed Twilio requests for the unit tests."""

from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from twilio.request_validator import RequestValidator

from calls.models import Call, PhoneNumber, Turn
from voiceagents.models import Agent, ApiToken, Tool

PUBLIC_BASE_URL = "https://voice.example.com"
AUTH_TOKEN = "test-twilio-auth-token"
ACCOUNT_SID = "AC" + "1" * 32
AGENT_NUMBER = "+15550001111"
CALLER_NUMBER = "+15550009999"


def make_agent(**kw) -> Agent:
    tools = kw.pop("tools", [])
    agent = Agent.objects.create(**({"name": "Front desk"} | kw))
    if tools:
        agent.tools.set(tools)
    return agent


def make_tool(**kw) -> Tool:
    defaults = {
        "name": "lookup_order",
        "description": "Look up an order by its number.",
        "parameters": {
            "type": "object",
            "properties": {"order": {"type": "string"}},
            "required": ["order"],
        },
        "kind": Tool.Kind.HTTP,
        "url": "https://tools.example.com/orders",
    }
    return Tool.objects.create(**(defaults | kw))


def make_number(agent: Agent, number: str = AGENT_NUMBER, **kw) -> PhoneNumber:
    return PhoneNumber.objects.create(number=number, agent=agent, **kw)


def make_call(sid: str = "CA" + "a" * 32, **kw) -> Call:
    defaults = {
        "account_sid": ACCOUNT_SID,
        "from_number": CALLER_NUMBER,
        "to_number": AGENT_NUMBER,
    }
    return Call.objects.create(sid=sid, **(defaults | kw))


def make_turn(call: Call, started_ms: int, text: str, speaker: str = "agent", **kw) -> Turn:
    return Turn.objects.create(call=call, speaker=speaker, text=text, started_ms=started_ms, **kw)


def make_api_token(name: str = "integration", **kw) -> tuple[ApiToken, str]:
    """A saved token and its raw secret (the only time the secret is known)."""
    token = ApiToken(name=name, **kw)
    raw = token.issue()
    token.save()
    return token, raw


def voice_params(call_sid: str = "CA" + "a" * 32, to: str = AGENT_NUMBER, **kw) -> dict:
    """The form fields Twilio posts to the voice webhook for an incoming call."""
    return {
        "CallSid": call_sid,
        "AccountSid": ACCOUNT_SID,
        "From": CALLER_NUMBER,
        "To": to,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    } | kw


def sign(url: str, params: dict, auth_token: str = AUTH_TOKEN, algorithm: str | None = None):
    return RequestValidator(auth_token).compute_signature(url, params, algorithm)


def signed_post(
    client: Client,
    path: str,
    params: dict,
    public_base_url: str = PUBLIC_BASE_URL,
    auth_token: str = AUTH_TOKEN,
    *,
    signed_url: str | None = None,
    algorithm: str | None = None,
    headers: dict | None = None,
):
    """POST form `params` to `path` as Twilio would, signed over the public URL (or over
    `signed_url` when a test wants to sign something else)."""
    url = signed_url or public_base_url + path
    headers = {"X-Twilio-Signature": sign(url, params, auth_token, algorithm)} | (headers or {})
    return client.post(
        path,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


def make_stored_recording(call: Call, wav: bytes, sid: str, duration_s: float):
    """A recording the worker has downloaded: the row and its file in the storage."""
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from transcripts.models import Recording

    recording = Recording.objects.create(
        call=call,
        sid=sid,
        twilio_status="completed",
        channels=2,
        duration_s=duration_s,
        state=Recording.State.STORED,
        stored_at=timezone.now(),
    )
    recording.file.save(f"{sid}.wav", ContentFile(wav))
    return recording


def make_transcript(call: Call, recording, segments: list[dict], **kw):
    """A completed diarized transcript whose speakers the channels decided."""
    from django.utils import timezone

    from transcripts.models import Transcript

    defaults = {
        "mode": "diarized",
        "model": "gpt-4o-transcribe-diarize",
        "status": "completed",
        "finished_at": timezone.now(),
        "method": "channel",
        "agent_label": "agent",
    }
    return Transcript.objects.create(
        call=call, recording=recording, segments=segments, **(defaults | kw)
    )


def user_with(*perms: str, staff: bool = True, superuser: bool = False):
    """A user holding exactly `perms` ("app_label.codename"). No password: hashing one per
    user would make the per-role tables slow, and force_login needs none."""
    users = get_user_model().objects
    user = users.create_user(f"user{users.count()}", is_staff=staff, is_superuser=superuser)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def client_for(user) -> Client:
    """A test client logged in as `user` (anonymous for None)."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client

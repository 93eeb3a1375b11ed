"""Settings from the environment (checked in fresh interpreters, since settings are read
once at import), and the Realtime session configuration built from an Agent."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.factories import make_agent, make_tool
from voiceagents.realtime import AgentConfig, realtime_url, session_update_event

ROOT = Path(__file__).resolve().parent.parent

# Everything the settings module reads that might be set in the developer's shell or CI.
SETTINGS_VARIABLES = {
    "DEBUG",
    "RECORDINGS_DIR",
    "RECORDINGS_S3_BUCKET",
    "RECORDINGS_S3_ENDPOINT_URL",
    "CELERY_BROKER_DIR",
    "SECRET_KEY",
    "OPENAI_API_KEY",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_ACCOUNT_SID",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "DATABASE_URL",
    "ALLOWED_HOSTS",
    "PUBLIC_BASE_URL",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "STREAM_TOKEN_MAX_AGE_S",
    "RATE_LIMIT_TWILIO_PER_MIN",
    "RATE_LIMIT_API_PER_MIN",
    "RATE_LIMIT_LOGIN_PER_MIN",
    "TRUSTED_PROXY_COUNT",
    "DJANGO_SETTINGS_MODULE",
}
PRODUCTION_SECRETS = {
    "SECRET_KEY": "a-long-production-secret",
    "OPENAI_API_KEY": "sk-prod",
    "TWILIO_AUTH_TOKEN": "twilio-prod",
}

PRINT_SETTINGS = textwrap.dedent(
    """
    import json
    import django
    from django.conf import settings

    django.setup()

    def recordings_storage():
        from django.core.files.storage import storages

        storage = storages["recordings"]
        return {
            "class": type(storage).__name__,
            "location": getattr(storage, "location", None),
            "base_url": getattr(storage, "base_url", None),
            "bucket": getattr(storage, "bucket_name", None),
            "endpoint": getattr(storage, "endpoint_url", None),
            "acl": getattr(storage, "default_acl", None),
            "signed": getattr(storage, "querystring_auth", None),
        }

    print(json.dumps({
        "DEBUG": settings.DEBUG,
        "SECRET_KEY": settings.SECRET_KEY,
        "OPENAI_API_KEY": settings.OPENAI_API_KEY,
        "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
        "CHANNEL_BACKEND": settings.CHANNEL_LAYERS["default"]["BACKEND"],
        "CHANNEL_CONFIG": settings.CHANNEL_LAYERS["default"].get("CONFIG"),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_BROKER_TRANSPORT_OPTIONS": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
        "STREAM_TOKEN_MAX_AGE_S": settings.STREAM_TOKEN_MAX_AGE_S,
        "CACHE": settings.CACHES["default"],
        "RATE_LIMITS": settings.RATE_LIMITS,
        "RECORDINGS": recordings_storage(),
    }))
    """
)


def run_settings(tmp_path: Path, **env: str | None) -> subprocess.CompletedProcess:
    """Settings in a fresh interpreter with `env` (DEBUG=true, as scripts/run sets it,
    unless `env` says otherwise; a None value leaves the variable unset)."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    given = {
        "DJANGO_SETTINGS_MODULE": "voiceagents.settings",
        "VAR_DIR": str(tmp_path),
        "PUBLIC_BASE_URL": "https://voice.example.com",
        "DEBUG": "true",
    } | env
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=ROOT,
        env=clean | {k: v for k, v in given.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=60,
    )


def loaded(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_defaults(tmp_path):
    values = loaded(run_settings(tmp_path))

    assert values["DEBUG"] is True
    assert values["SECRET_KEY"].startswith("dev-insecure-only")
    assert values["OPENAI_API_KEY"].startswith("dev-insecure-only")
    assert values["CHANNEL_BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert values["CELERY_BROKER_URL"] == "filesystem://"
    assert values["CELERY_BROKER_TRANSPORT_OPTIONS"]["data_folder_in"].startswith(str(tmp_path))
    assert (tmp_path / "celery-broker").is_dir()
    # Celery's broadcast queues go under var/ too, not into whatever directory it runs in.
    assert values["CELERY_BROKER_TRANSPORT_OPTIONS"]["control_folder"].startswith(str(tmp_path))


def test_debug_is_off_unless_set(tmp_path):
    refused = run_settings(tmp_path, DEBUG=None)
    production = loaded(run_settings(tmp_path, DEBUG=None, **PRODUCTION_SECRETS))

    assert refused.returncode != 0
    assert "SECRET_KEY must be set when DEBUG=false" in refused.stderr
    assert "set DEBUG=true" in refused.stderr  # how to get the development defaults
    assert production["DEBUG"] is False


def test_recordings_are_local_files_under_var_with_no_public_url(tmp_path):
    recordings = loaded(run_settings(tmp_path))["RECORDINGS"]

    assert recordings["class"] == "FileSystemStorage"
    assert recordings["location"] == str(tmp_path / "recordings")
    # No URL serves that folder (no MEDIA_URL route): only the staff view streams them;
    # tests/test_review_pages.py checks the file's own path is a 404.


def test_recordings_go_to_an_s3_compatible_bucket_by_settings(tmp_path):
    recordings = loaded(
        run_settings(
            tmp_path,
            RECORDINGS_S3_BUCKET="call-recordings",
            RECORDINGS_S3_ENDPOINT_URL="https://minio.internal:9000",
        )
    )["RECORDINGS"]

    assert recordings["class"] == "S3Storage"
    assert recordings["bucket"] == "call-recordings"
    assert recordings["endpoint"] == "https://minio.internal:9000"
    assert (recordings["acl"], recordings["signed"]) == ("private", True)


def test_production_with_all_secrets_starts(tmp_path):
    values = loaded(
        run_settings(
            tmp_path,
            DEBUG="false",
            PUBLIC_BASE_URL="https://voice.example.com",
            **PRODUCTION_SECRETS,
        )
    )

    assert values["DEBUG"] is False
    assert values["SECRET_KEY"] == "a-long-production-secret"
    assert values["OPENAI_API_KEY"] == "sk-prod"
    assert values["TWILIO_AUTH_TOKEN"] == "twilio-prod"
    assert values["ALLOWED_HOSTS"] == ["voice.example.com", "localhost", "127.0.0.1"]


@pytest.mark.parametrize("missing", sorted(PRODUCTION_SECRETS))
def test_production_without_a_secret_fails_naming_it(tmp_path, missing):
    given = {k: v for k, v in PRODUCTION_SECRETS.items() if k != missing}

    result = run_settings(tmp_path, DEBUG="false", **given)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{missing} must be set" in result.stderr
    for other in given:
        assert f"{other} must be set" not in result.stderr


def test_production_with_an_empty_secret_fails(tmp_path):
    result = run_settings(tmp_path, DEBUG="false", **(PRODUCTION_SECRETS | {"SECRET_KEY": ""}))

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_public_base_url_that_is_not_https(tmp_path):
    result = run_settings(
        tmp_path, DEBUG="false", PUBLIC_BASE_URL="http://voice.example.com", **PRODUCTION_SECRETS
    )

    assert result.returncode != 0
    assert "PUBLIC_BASE_URL='http://voice.example.com' must start with https://" in result.stderr


def test_debug_mode_warns_about_a_public_base_url_that_is_not_https(tmp_path):
    check = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
        | {
            "VAR_DIR": str(tmp_path),
            "PUBLIC_BASE_URL": "http://voice.example.com",
            "DEBUG": "true",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert check.returncode == 0, check.stderr
    assert "voiceagents.W001" in check.stderr
    assert "Twilio refuses ws://" in check.stderr


@pytest.mark.parametrize("word", ["maybe", "2", "enabled"])
def test_debug_that_is_not_a_boolean_is_a_clear_error(tmp_path, word):
    result = run_settings(tmp_path, DEBUG=word)

    assert result.returncode != 0
    assert f"DEBUG={word!r} is not a boolean" in result.stderr


@pytest.mark.parametrize(("word", "expected"), [("0", False), ("OFF", False), ("Yes", True)])
def test_debug_boolean_words(tmp_path, word, expected):
    values = loaded(run_settings(tmp_path, DEBUG=word, **PRODUCTION_SECRETS))

    assert values["DEBUG"] is expected


def test_number_that_is_not_a_number_is_a_clear_error(tmp_path):
    result = run_settings(tmp_path, STREAM_TOKEN_MAX_AGE_S="two minutes")

    assert result.returncode != 0
    assert "STREAM_TOKEN_MAX_AGE_S='two minutes' is not a int" in result.stderr


def test_bad_log_format_is_a_clear_error(tmp_path):
    result = run_settings(tmp_path, LOG_FORMAT="xml")

    assert result.returncode != 0
    assert "LOG_FORMAT='xml'" in result.stderr


def test_redis_url_switches_channel_layer_and_celery_broker(tmp_path):
    redis_url = "redis://cache.internal:6379/2"

    values = loaded(run_settings(tmp_path, REDIS_URL=redis_url))

    assert values["CHANNEL_BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert values["CHANNEL_CONFIG"] == {"hosts": [{"address": redis_url, "socket_timeout": 15}]}
    assert values["CELERY_BROKER_URL"] == redis_url
    assert values["CELERY_BROKER_TRANSPORT_OPTIONS"] == {}
    # Rate-limit counters are shared by every web process through the same Redis, which
    # fails fast when it is away (the limiter then lets requests through).
    assert values["CACHE"] == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_url,
        "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
    }


def test_rate_limits_from_the_environment(tmp_path):
    values = loaded(
        run_settings(tmp_path, RATE_LIMIT_TWILIO_PER_MIN="0", RATE_LIMIT_API_PER_MIN="30")
    )

    assert values["RATE_LIMITS"] == {"twilio": 0, "api": 30, "login": 10}
    assert values["CACHE"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


def test_celery_broker_url_overrides_redis_url(tmp_path):
    values = loaded(
        run_settings(
            tmp_path, REDIS_URL="redis://cache:6379/0", CELERY_BROKER_URL="amqp://mq:5672//"
        )
    )

    assert values["CELERY_BROKER_URL"] == "amqp://mq:5672//"
    assert values["CHANNEL_BACKEND"] == "channels_redis.core.RedisChannelLayer"


# --- voiceagents.realtime ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "model", "expected"),
    [
        (
            "https://api.openai.com/v1",
            "gpt-realtime",
            "wss://api.openai.com/v1/realtime?model=gpt-realtime",
        ),
        (
            "https://api.openai.com/v1/",
            "gpt-realtime-1.5",
            "wss://api.openai.com/v1/realtime?model=gpt-realtime-1.5",
        ),
        (
            "http://127.0.0.1:8765/v1",
            "gpt-realtime-mini",
            "ws://127.0.0.1:8765/v1/realtime?model=gpt-realtime-mini",
        ),
    ],
)
def test_realtime_url(base_url, model, expected):
    assert realtime_url(base_url, model) == expected


@pytest.mark.django_db
def test_session_update_for_server_vad_agent_without_tools():
    agent = make_agent(
        name="Reception",
        model="gpt-realtime",
        voice="cedar",
        speed=1.1,
        instructions="You answer the phone for a bakery.",
        vad_threshold=0.6,
        vad_prefix_padding_ms=250,
        vad_silence_duration_ms=700,
        interrupt_response=False,
        noise_reduction="far_field",
        input_transcription_model="gpt-4o-mini-transcribe",
        end_call_enabled=False,
    )

    assert session_update_event(AgentConfig.from_agent(agent)) == {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "output_modalities": ["audio"],
            "instructions": "You answer the phone for a bakery.",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "noise_reduction": {"type": "far_field"},
                    "transcription": {"model": "gpt-4o-mini-transcribe"},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.6,
                        "prefix_padding_ms": 250,
                        "silence_duration_ms": 700,
                        "create_response": True,
                        "interrupt_response": False,
                    },
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": "cedar", "speed": 1.1},
            },
        },
    }


@pytest.mark.django_db
def test_session_update_defaults_of_a_new_agent():
    session = session_update_event(AgentConfig.from_agent(make_agent()))["session"]

    assert session["model"] == "gpt-realtime-1.5"
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcmu"},
        "voice": "marin",
        "speed": 1.0,
    }
    assert session["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-transcribe"}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert [t["name"] for t in session["tools"]] == ["end_call"]  # it can hang up by default


@pytest.mark.django_db
def test_session_update_for_semantic_vad_agent_with_tools_and_audio_options_off():
    lookup = make_tool()
    hang_up = make_tool(
        name="end_call", description="End the call.", kind="end_call", url="", parameters={}
    )
    agent = make_agent(
        turn_detection="semantic_vad",
        semantic_eagerness="low",
        vad_threshold=0.9,
        noise_reduction="",
        input_transcription_model="",
        tools=[lookup, hang_up],
    )

    session = session_update_event(AgentConfig.from_agent(agent))["session"]

    audio_input = session["audio"]["input"]
    assert audio_input["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": True,
    }
    assert "noise_reduction" in audio_input
    assert audio_input["noise_reduction"] is None
    assert "transcription" not in audio_input
    assert session["tool_choice"] == "auto"
    # Agent.tools has no order of its own: compare by name.
    tools = sorted(session["tools"], key=lambda t: t["name"])
    assert tools == [
        {
            "type": "function",
            "name": "end_call",
            "description": "End the call.",
            "parameters": {"type": "object", "properties": {}},
        },
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Look up an order by its number.",
            "parameters": {
                "type": "object",
                "properties": {"order": {"type": "string"}},
                "required": ["order"],
            },
        },
    ]
    assert json.loads(json.dumps(session)) == session  # plain JSON, ready to send


def test_check_deploy_is_clean_in_production_settings(tmp_path):
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
        | {
            "VAR_DIR": str(tmp_path),
            "DEBUG": "false",
            "PUBLIC_BASE_URL": "https://voice.example.com",
            "SECRET_KEY": "a-production-secret-with-more-than-fifty-varied-characters-0123456789",
            "OPENAI_API_KEY": "sk-prod",
            "TWILIO_AUTH_TOKEN": "twilio-prod",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert check.returncode == 0, check.stderr
    assert "no issues" in check.stdout


def test_a_tool_egress_exception_that_is_not_a_network_is_a_clear_error(tmp_path):
    result = run_settings(tmp_path, TOOL_EGRESS_ALLOW="10.0.0.0/8, intranet")

    assert result.returncode != 0
    assert "TOOL_EGRESS_ALLOW: 'intranet' is not an address or network" in result.stderr


def test_a_secrets_encryption_key_that_is_not_a_fernet_key_is_refused(tmp_path):
    result = run_settings(tmp_path, SECRETS_ENCRYPTION_KEYS="not-a-key")

    assert result.returncode != 0
    assert "SECRETS_ENCRYPTION_KEYS: each key must be a Fernet key" in result.stderr


@pytest.mark.django_db
def test_a_new_agent_can_hang_up_without_any_tool_attached():
    config = AgentConfig.from_agent(make_agent())

    (end_call,) = config.tools
    assert (end_call.name, end_call.kind) == ("end_call", "end_call")
    assert session_update_event(config)["session"]["tools"] == [end_call.definition]


@pytest.mark.django_db
def test_the_hang_up_switch_governs_an_attached_end_call_tool():
    worded = make_tool(name="say_bye", kind="end_call", url="", description="Hang up politely.")
    lookup = make_tool()

    on = AgentConfig.from_agent(make_agent(tools=[worded, lookup]))
    off = AgentConfig.from_agent(make_agent(tools=[worded, lookup], end_call_enabled=False))

    assert [t.name for t in on.tools] == ["lookup_order", "say_bye"]  # no second end_call
    assert [t.name for t in off.tools] == ["lookup_order"]

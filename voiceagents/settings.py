"""One settings module, driven by environment variables.

With nothing set it runs embedded: SQLite, an in-process channel layer and a filesystem
Celery broker, with development secrets. With DEBUG=false every secret must be given, or
start-up fails with a message naming the missing variable.
"""

import base64
import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from voiceagents.env import env, env_bool, env_float, env_int

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Off unless asked for: a deployment that forgets it gets production behaviour (secrets
# required, no debug pages), not a debug server. scripts/run and the tests turn it on.
DEBUG = env_bool("DEBUG", False)
DEV_SECRET = "dev-insecure-only"


def secret(name: str) -> str:
    """A secret: required in production, a fixed development value otherwise."""
    value = env(name, "")
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(
            f"{name} must be set when DEBUG=false (DEBUG is false unless set; for development "
            "use scripts/run, or set DEBUG=true as it does)"
        )
    return f"{DEV_SECRET}-{name.lower()}"


SECRET_KEY = secret("SECRET_KEY")
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# Twilio refuses ws:// media streams, and the stream URL is PUBLIC_BASE_URL with its
# scheme swapped: an http:// base would make every call fail after the webhook answered.
# Debug mode warns instead (a `manage.py check` warning), for local fakes.
if not DEBUG and urlsplit(PUBLIC_BASE_URL).scheme != "https":
    raise ImproperlyConfigured(
        f"PUBLIC_BASE_URL={PUBLIC_BASE_URL!r} must start with https:// when DEBUG=false: "
        "Twilio only connects media streams to wss:// URLs."
    )
# Loopback stays allowed in production so container health probes (/healthz) get through.
ALLOWED_HOSTS = [h for h in env("ALLOWED_HOSTS", "").split(",") if h] or (
    ["*"] if DEBUG else [urlsplit(PUBLIC_BASE_URL).hostname, "localhost", "127.0.0.1"]
)
CSRF_TRUSTED_ORIGINS = [f"{urlsplit(PUBLIC_BASE_URL).scheme}://{urlsplit(PUBLIC_BASE_URL).netloc}"]
if not DEBUG:  # PUBLIC_BASE_URL is https (checked above)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # HSTS on every https response; 0 turns it off.
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# `check --deploy` stays quiet about two choices made on purpose: the TLS proxy in front
# redirects http to https (Daphne behind it only sees the proxy, and health probes come
# over plain loopback), and HSTS preloading is an irreversible operator decision.
SILENCED_SYSTEM_CHECKS = ["security.W008", "security.W021"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",  # its templates and static files: the API docs work without a CDN
    "voiceagents",
    "calls",
    "transcripts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "voiceagents.security_headers.SecurityHeadersMiddleware",
    "voiceagents.rate_limit.RateLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "voiceagents.timezones.StaffTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "voiceagents.urls"
ASGI_APPLICATION = "voiceagents.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite by default; WAL and IMMEDIATE transactions let the web process and the worker
# write at once without "database is locked".
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        # Calls save turns from one database thread per process: keep its connection
        # rather than opening one per turn; health checks replace a dropped one.
        conn_max_age=env_int("DB_CONN_MAX_AGE_S", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file (not in-memory) test database, so a Daphne process under test shares it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", "")
# channels_redis waits for messages with a 5 s blocking pop; redis-py's default 5 s socket
# timeout would fire first and kill every consumer after 5 quiet seconds.
REDIS_SOCKET_TIMEOUT_S = 15


def redis_channel_layer(url: str) -> dict:
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": url, "socket_timeout": REDIS_SOCKET_TIMEOUT_S}]},
    }


if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Daphne processes sharing the web port (voiceagents/web_server.py): every core when
# Redis carries the channel layer, else one, since an in-process layer cannot reach a call
# held by another process (a staff hang-up would be lost).
WEB_PROCESSES = env_int("WEB_PROCESSES", (os.cpu_count() or 1) if REDIS_URL else 1)
if WEB_PROCESSES > 1 and not REDIS_URL:
    raise ImproperlyConfigured(
        f"WEB_PROCESSES={WEB_PROCESSES} needs REDIS_URL: without Redis each process has its "
        "own channel layer, and a staff hang-up or live page would miss calls held by "
        "another process. Set REDIS_URL, or WEB_PROCESSES=1."
    )

# The cache holds rate-limit counters: shared through Redis when there are several web
# processes, in-process otherwise.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        # Fail fast when Redis is away: the rate limiter then lets requests through.
        "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
    }
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
# Requests per minute per client address; 0 turns a limit off. Twilio's webhooks and
# streams share the "twilio" limit: raise it for many calls a minute from one Twilio edge.
RATE_LIMITS = {
    "twilio": env_int("RATE_LIMIT_TWILIO_PER_MIN", 600),
    "api": env_int("RATE_LIMIT_API_PER_MIN", 120),
    "login": env_int("RATE_LIMIT_LOGIN_PER_MIN", 10),
}
# Proxies in front of the app that append to X-Forwarded-For (1 behind one TLS proxy).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# The largest HTTP request body the web process reads (voiceagents/web_server.py refuses
# a larger one with 413 before buffering it). Nothing the app accepts comes near it:
# Twilio's webhooks are a few kilobytes, staff forms and API writes are text.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# Celery: Redis when given, else a filesystem broker so the embedded worker needs no server.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
# The embedded broker's folder: the web process and the worker must share it.
CELERY_BROKER_DIR = Path(env("CELERY_BROKER_DIR", str(VAR_DIR)))
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(CELERY_BROKER_DIR / "celery-broker"),
        "data_folder_out": str(CELERY_BROKER_DIR / "celery-broker"),
        "processed_folder": str(CELERY_BROKER_DIR / "celery-processed"),
        "control_folder": str(CELERY_BROKER_DIR / "celery-control"),  # else ./control in cwd
        # The worker looks for new tasks this often (kombu's default is 1 s per hop).
        "polling_interval": 0.2,
        "store_processed": False,
    }
    if CELERY_BROKER_URL == "filesystem://"
    else {}
)
if CELERY_BROKER_TRANSPORT_OPTIONS:
    for folder in ("data_folder_in", "control_folder"):
        Path(CELERY_BROKER_TRANSPORT_OPTIONS[folder]).mkdir(parents=True, exist_ok=True)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

STATIC_URL = "static/"
# In development WhiteNoise serves straight from the app folders; in production from
# collectstatic's output.
WHITENOISE_USE_FINDERS = DEBUG
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request otherwise
STATICFILES_DIRS = [BASE_DIR / "static"]
# Call recordings: local files under VAR_DIR (served only through the staff view, never by
# a public URL), or an S3-compatible bucket when RECORDINGS_S3_BUCKET is set.
RECORDINGS_DIR = Path(env("RECORDINGS_DIR", str(VAR_DIR / "recordings")))
RECORDINGS_S3_BUCKET = env("RECORDINGS_S3_BUCKET", "")
RECORDINGS_STORAGE = (
    {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": RECORDINGS_S3_BUCKET,
            "endpoint_url": env("RECORDINGS_S3_ENDPOINT_URL", "") or None,
            "region_name": env("RECORDINGS_S3_REGION", "") or None,
            "access_key": env("RECORDINGS_S3_ACCESS_KEY_ID", "") or None,
            "secret_key": env("RECORDINGS_S3_SECRET_ACCESS_KEY", "") or None,
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
    if RECORDINGS_S3_BUCKET
    else {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(RECORDINGS_DIR), "base_url": None},
    }
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "recordings": RECORDINGS_STORAGE,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
LOGIN_URL = "admin:login"
# Django's four checks on every password set through a form (the admin's user pages,
# changepassword), so a staff account cannot get a password such as "1".
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

# --- External services. Base URLs are configurable so tests run against local fakes.
OPENAI_API_KEY = secret("OPENAI_API_KEY")
OPENAI_BASE_URL = env("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = secret("TWILIO_AUTH_TOKEN")
# Twilio signs with a SharedKey's secret instead of the auth token when the request says
# so (X-Twilio-Webhooks-Signature-Settings); such requests are refused while this is unset.
TWILIO_WEBHOOK_SHARED_KEY_SECRET = env("TWILIO_WEBHOOK_SHARED_KEY_SECRET", "")
TWILIO_API_BASE_URL = env("TWILIO_API_BASE_URL", "https://api.twilio.com").rstrip("/")

# --- After hangup: recording, transcript, summary, completion webhooks.
TRANSCRIBE_DIARIZED_MODEL = env("TRANSCRIBE_DIARIZED_MODEL", "gpt-4o-transcribe-diarize")
TRANSCRIBE_STANDARD_MODEL = env("TRANSCRIBE_STANDARD_MODEL", "gpt-4o-transcribe")
SPEAKER_ID_MODEL = env("SPEAKER_ID_MODEL", "gpt-5-mini")
SUMMARY_MODEL = env("SUMMARY_MODEL", SPEAKER_ID_MODEL)
OPENAI_HTTP_TIMEOUT_S = env_float("OPENAI_HTTP_TIMEOUT_S", 300.0)
# OpenAI takes at most 25 MB and about 1,400 s of audio per transcription request; longer
# recordings are cut at silences into pieces of at most this length.
TRANSCRIPTION_PIECE_MAX_S = env_float("TRANSCRIPTION_PIECE_MAX_S", 1200.0)
# Twilio may answer 404 for a moment after the callback; 429 and 5xx are retried too.
RECORDING_FETCH_FIRST_RETRY_S = env_float("RECORDING_FETCH_FIRST_RETRY_S", 2.0)
RECORDING_FETCH_MAX_S = env_float("RECORDING_FETCH_MAX_S", 600.0)
TWILIO_DELETE_RECORDINGS = env_bool("TWILIO_DELETE_RECORDINGS", False)
RECORDING_RETENTION_DAYS = env_int("RECORDING_RETENTION_DAYS", 0)  # 0 keeps them
OPENAI_RETRY_MAX_S = env_float("OPENAI_RETRY_MAX_S", 300.0)
WEBHOOK_TIMEOUT_S = env_float("WEBHOOK_TIMEOUT_S", 10.0)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
WEBHOOK_FIRST_RETRY_S = env_float("WEBHOOK_FIRST_RETRY_S", 10.0)
# A recording callback that has not come this long after the call ended is not coming.
RECORDING_CALLBACK_WAIT_S = env_float("RECORDING_CALLBACK_WAIT_S", 3600.0)
CELERY_BEAT_SCHEDULE = {
    "purge-old-recordings": {"task": "transcripts.tasks.purge_old_recordings", "schedule": 3600.0},
    "summarise-calls-without-recording": {
        "task": "transcripts.tasks.summarise_calls_without_recording",
        "schedule": 900.0,
    },
    "finalise-unconnected-calls": {
        "task": "calls.tasks.finalise_unconnected_calls",
        "schedule": 300.0,
    },
}

# --- Call behaviour.
STREAM_TOKEN_MAX_AGE_S = env_int("STREAM_TOKEN_MAX_AGE_S", 120)
# A call still `ringing` this long after its webhook never got its stream (the token has
# long expired): the beat task ends it as `never_connected`.
UNCONNECTED_CALL_TIMEOUT_S = env_float(
    "UNCONNECTED_CALL_TIMEOUT_S", max(600.0, 2.0 * STREAM_TOKEN_MAX_AGE_S)
)
OPENAI_CONNECT_TIMEOUT_S = env_float("OPENAI_CONNECT_TIMEOUT_S", 10.0)
# Realtime sessions end after 60 minutes; move long calls to a new one before that.
OPENAI_SESSION_ROLLOVER_S = env_float("OPENAI_SESSION_ROLLOVER_S", 55 * 60.0)
# After an OpenAI fault the session may still owe the caller's last words their transcript.
OPENAI_TRANSCRIPT_WAIT_S = env_float("OPENAI_TRANSCRIPT_WAIT_S", 2.0)
# The media hot path (bench/RESULTS.md has the measurements behind both defaults):
# a mark after every MARK_INTERVAL_MS of agent audio sent to Twilio (and after each
# item's last chunk; 0: after every chunk), and caller audio sent to OpenAI in batches of
# INBOUND_AUDIO_WINDOW_MS (0: each 20 ms frame as it comes).
MARK_INTERVAL_MS = env_int("MARK_INTERVAL_MS", 250)
INBOUND_AUDIO_WINDOW_MS = env_int("INBOUND_AUDIO_WINDOW_MS", 0)
HTTP_TOOL_TIMEOUT_S = env_float("HTTP_TOOL_TIMEOUT_S", 10.0)  # the whole request and reply
HTTP_TOOL_MAX_REPLY_BYTES = env_int("HTTP_TOOL_MAX_REPLY_BYTES", 256 * 1024)
# Agent tools may not reach loopback, private, link-local… addresses except these
# (comma-separated addresses or networks, e.g. "10.0.5.0/24"); see voiceagents/egress.py.
# Fernet keys that encrypt stored tool header values (voiceagents/secret_box.py): the
# first encrypts, all decrypt. Unset: a key derived from SECRET_KEY.
SECRETS_ENCRYPTION_KEYS = [
    k.strip() for k in env("SECRETS_ENCRYPTION_KEYS", "").split(",") if k.strip()
]
for _key in SECRETS_ENCRYPTION_KEYS:
    try:
        if len(base64.urlsafe_b64decode(_key)) != 32:
            raise ValueError
    except ValueError:
        raise ImproperlyConfigured(
            "SECRETS_ENCRYPTION_KEYS: each key must be a Fernet key (32 bytes, url-safe "
            "base64); make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None
TOOL_EGRESS_ALLOW = [n.strip() for n in env("TOOL_EGRESS_ALLOW", "").split(",") if n.strip()]
for _network in TOOL_EGRESS_ALLOW:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"TOOL_EGRESS_ALLOW: {_network!r} is not an address or network"
        ) from None
TOOL_ALLOW_HTTP = env_bool("TOOL_ALLOW_HTTP", DEBUG)  # else tool URLs must be https://
APOLOGY_TEXT = env(
    "APOLOGY_TEXT",
    "Sorry, we are having technical difficulties and have to end the call. Please try again later.",
)
UNKNOWN_NUMBER_TEXT = env("UNKNOWN_NUMBER_TEXT", "Sorry, this number is not in service. Goodbye.")

LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOG_FORMAT = env("LOG_FORMAT", "plain")
LOG_MASK_NUMBERS = env_bool("LOG_MASK_NUMBERS", False)  # caller numbers in logs: +1555*****11
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json")
# The debug error page lists no settings and hides locals holding credentials.
DEFAULT_EXCEPTION_REPORTER_FILTER = "voiceagents.error_reports.NoSettingsReporterFilter"
# Messages live in the session (server side), not in Django's signed-but-readable cookie:
# the admin's "copy this API token now" message carries the token's secret.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "call_sid": {"()": "voiceagents.log_context.CallSidFilter"},
        "redact_secrets": {"()": "voiceagents.log_context.SecretRedactionFilter"},
        "one_line": {"()": "voiceagents.log_context.OneLineFilter"},
        "httpx_urls": {"()": "voiceagents.log_context.HttpxUrlFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s call=%(call_sid)s %(message)s"},
        "json": {"()": "voiceagents.log_context.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["call_sid", "redact_secrets", "httpx_urls", "one_line"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

"""Who may reach what: every named URL in the URLconfs, the admin's included, requested as
each of four roles (anonymous, logged in but not staff, staff without permissions,
superuser), with the status each must get. A named URL missing from the table fails
test_every_url_has_an_access_rule. The admin's model pages follow one rule (below),
generated per registered model; the permission-by-permission checks of the staff pages
are in test_review_pages.py."""

import re
from unittest import mock

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import make_number
from tests.test_review_pages import SID, STAFF_URLS, reviewed_call  # noqa: F401 - a fixture
from voiceagents.models import ApiToken, Tool
from voiceagents.versions import record_version
from voiceagents.voice_preview import preview_path, wav_bytes

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "non_staff", "staff", "superuser")
LOGIN = "login"  # a 302 to the admin's login form

# The admin's model pages: (suffix, path under the model's admin URL). Staff need the
# model's Django permission; superusers have them all, except where the ModelAdmin
# refuses the action to everyone (ADMIN_REFUSED_TO_ALL).
ADMIN_MODEL_PAGES = {
    "changelist": "",
    "add": "add/",
    "change": "{pk}/change/",
    "history": "{pk}/history/",
    "delete": "{pk}/delete/",
}
ADMIN_REFUSED_TO_ALL = {  # read-only records: calls and the pipeline's output
    "calls_call_add",
    "transcripts_recording_add",
    "transcripts_transcript_add",
    "transcripts_callsummary_add",
    "transcripts_webhookdelivery_add",
}


def by_role(anonymous, non_staff, staff, superuser) -> dict[str, int | str]:
    return dict(zip(ROLES, (anonymous, non_staff, staff, superuser), strict=True))


STAFF_PAGE = by_role(LOGIN, LOGIN, 403, 200)
# Twilio's webhooks answer to Twilio's signature alone, the API to a token alone: a staff
# session opens neither.
OTHER_URLS = {
    "healthz": ("get", "/healthz", by_role(200, 200, 200, 200)),
    "twilio-voice": ("post", "/twilio/voice", by_role(403, 403, 403, 403)),
    "twilio-stream-ended": ("post", "/twilio/stream-ended", by_role(403, 403, 403, 403)),
    "twilio-recording": ("post", "/twilio/recording", by_role(403, 403, 403, 403)),
    "twilio-outbound-answer": (
        "post",
        "/twilio/outbound-answer?call={call_pk}",
        by_role(403, 403, 403, 403),
    ),
    "twilio-call-status": (
        "post",
        "/twilio/call-status?call={call_pk}",
        by_role(403, 403, 403, 403),
    ),
    # The API's schema and docs hold no data; its root is empty; every operation wants a
    # token (api_urls() below).
    "api:openapi-json": ("get", "/api/schema", by_role(200, 200, 200, 200)),
    "api:openapi-view": ("get", "/api/docs", by_role(200, 200, 200, 200)),
    "api:api-root": ("get", "/api/", by_role(404, 404, 404, 404)),
    # The console: home for any staff member (each part checks its own permission), the
    # agent pages with Django's agent permissions (test_agent_pages.py goes through them).
    "home": ("get", "/", by_role(LOGIN, LOGIN, 200, 200)),
    "agent-list": ("get", "/agents/", STAFF_PAGE),
    "call-place": ("post", "/calls/place", STAFF_PAGE | {"superuser": 302}),
    "analytics": ("get", "/analytics/", STAFF_PAGE),
    "tool-list": ("get", "/tools/", STAFF_PAGE),
    "tool-create": ("get", "/tools/new", STAFF_PAGE),
    "tool-edit": ("get", "/tools/{tool_pk}/", STAFF_PAGE),
    "tool-test": ("post", "/tools/{tool_pk}/test", STAFF_PAGE | {"superuser": 200}),
    "agent-create": ("get", "/agents/new", STAFF_PAGE),
    "voice-preview": ("get", "/agents/voices/marin.wav", STAFF_PAGE),
    "agent-detail": ("get", "/agents/{agent_pk}/", STAFF_PAGE),
    "agent-edit": ("get", "/agents/{agent_pk}/edit", STAFF_PAGE),
    "agent-duplicate": ("post", "/agents/{agent_pk}/duplicate", STAFF_PAGE | {"superuser": 302}),
    "agent-archive": ("post", "/agents/{agent_pk}/archive", STAFF_PAGE | {"superuser": 302}),
    "agent-place-call": ("post", "/agents/{agent_pk}/call", STAFF_PAGE | {"superuser": 302}),
    "agent-restore-version": (
        "post",
        "/agents/{agent_pk}/versions/1/restore",
        STAFF_PAGE | {"superuser": 302},
    ),
    "admin:index": ("get", "/admin/", by_role(LOGIN, LOGIN, 200, 200)),
    # The form itself; staff already logged in are sent on to the index.
    "admin:login": ("get", "/admin/login/", by_role(200, 200, 302, 302)),
    # Logging out: anyone may; those not logged in as staff are sent to the admin index.
    "admin:logout": ("post", "/admin/logout/", by_role(302, 302, 200, 200)),
    "admin:password_change": ("get", "/admin/password_change/", by_role(LOGIN, LOGIN, 200, 200)),
    "admin:password_change_done": (
        "get",
        "/admin/password_change/done/",
        by_role(LOGIN, LOGIN, 200, 200),
    ),
    # Without the field it completes, the request is refused even to superusers.
    "admin:autocomplete": ("get", "/admin/autocomplete/", by_role(LOGIN, LOGIN, 403, 403)),
    "admin:jsi18n": ("get", "/admin/jsi18n/", by_role(LOGIN, LOGIN, 200, 200)),
    # "View on site" of a call: its page (staff without calls.view_call get 403 there).
    "admin:view_on_site": (
        "get",
        "/admin/r/{call_type}/{call_pk}/",
        by_role(LOGIN, LOGIN, 302, 302),
    ),
    # Setting another user's password: the user admin's own page.
    "admin:auth_user_password_change": (
        "get",
        "/admin/auth/user/{user_pk}/password/",
        by_role(LOGIN, LOGIN, 403, 200),
    ),
    # An app's admin page: staff without a permission in it get 404, as Django does.
    "admin:app_list": ("get", "/admin/calls/", by_role(LOGIN, LOGIN, 404, 200)),
}


def admin_model_urls(objects: dict) -> dict:
    table = {}
    for model in admin.site._registry:
        meta = model._meta
        base = f"/admin/{meta.app_label}/{meta.model_name}/"
        for suffix, tail in ADMIN_MODEL_PAGES.items():
            name = f"{meta.app_label}_{meta.model_name}_{suffix}"
            expected = dict(STAFF_PAGE)
            if name in ADMIN_REFUSED_TO_ALL:
                expected["superuser"] = 403
            obj = objects.get(model) or model._default_manager.first()
            path = base + tail.format(pk=obj.pk if obj else 0)
            table[f"admin:{name}"] = ("get", path, expected)
    return table


# The API's operations by what their name starts with: the method they answer.
API_METHODS = {
    "list_": "get",
    "get_": "get",
    "create_": "post",
    "place_": "post",
    "hang_": "post",
    "update_": "patch",
    "archive_": "delete",
    "delete_": "delete",
}


def api_urls() -> dict:
    """Every API operation: 401 for every role, since only a token opens it."""
    table = {}
    api_resolver = next(
        p
        for p in get_resolver().url_patterns
        if isinstance(p, URLResolver) and p.namespace == "api"
    )
    for pattern in api_resolver.url_patterns:
        name = pattern.name
        if f"api:{name}" in OTHER_URLS:
            continue
        method = next(m for prefix, m in API_METHODS.items() if name.startswith(prefix))
        path = "/api/" + re.sub(
            r"<(?:\w+:)?(\w+)>", lambda m: SID if m[1] == "sid" else "1", str(pattern.pattern)
        )
        table[f"api:{name}"] = (method, path, by_role(401, 401, 401, 401))
    return table


def url_names() -> set[str]:
    def walk(patterns, namespace=None):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and pattern.name:
                yield f"{namespace}:{pattern.name}" if namespace else pattern.name

    return set(walk(get_resolver().url_patterns))


def staff_urls() -> dict:
    """The staff pages, each with every permission it needs held by the superuser alone;
    their actions (POST) redirect back to the call page when done."""
    return {
        name: (method, path, STAFF_PAGE | ({"superuser": 302} if method == "post" else {}))
        for name, (method, path, _) in STAFF_URLS.items()
    }


@pytest.fixture
def every_model_has_a_row(reviewed_call):  # noqa: F811 - the fixture imported above
    user = get_user_model().objects.create_user("someone")
    token = ApiToken(name="crm")
    token.issue()
    token.save()
    tool = Tool.objects.create(name="end_call", description="d", kind=Tool.Kind.END_CALL)
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="reviewers")
    number = make_number(reviewed_call.agent, "+15550003333")
    return {type(o): o for o in (user, token, tool, group, number)}


@pytest.fixture
def table(every_model_has_a_row, reviewed_call, settings, tmp_path):  # noqa: F811
    settings.VAR_DIR = tmp_path  # a stored voice preview: no request to OpenAI
    preview_path("marin").parent.mkdir(parents=True)
    preview_path("marin").write_bytes(wav_bytes(b"\0\0" * 240))
    ids = {
        "call_type": ContentType.objects.get_for_model(type(reviewed_call)).pk,
        "call_pk": reviewed_call.pk,
        "user_pk": every_model_has_a_row[get_user_model()].pk,
        "agent_pk": reviewed_call.agent.pk,
        "tool_pk": every_model_has_a_row[Tool].pk,
    }
    record_version(reviewed_call.agent)  # version 1, to restore
    other = {
        name: (method, path.format(**ids), expected)
        for name, (method, path, expected) in OTHER_URLS.items()
    }
    return other | staff_urls() | admin_model_urls(every_model_has_a_row) | api_urls()


def role_client(role: str) -> Client:
    client = Client()
    users = get_user_model().objects
    if role == "non_staff":
        client.force_login(users.create_user(f"{role}-user"))
    elif role == "staff":
        client.force_login(users.create_user(f"{role}-user", is_staff=True))
    elif role == "superuser":
        client.force_login(users.create_superuser(f"{role}-user"))
    return client


def test_every_url_has_an_access_rule(table):
    assert url_names() == set(table)


@pytest.mark.parametrize("role", ROLES)
@mock.patch("transcripts.tasks.rerun_pipeline", mock.Mock(return_value="queued"))
def test_each_role_gets_the_status_in_the_table(table, role):
    client = role_client(role)
    wrong = {}
    # Logging out last: it ends the session the other requests use.
    for name in sorted(table, key=lambda name: (name == "admin:logout", name)):
        method, path, expected = table[name]
        response = getattr(client, method)(path)
        got = response.status_code
        if got == 302 and response["Location"].startswith("/admin/login/"):
            got = LOGIN
        if got != expected[role]:
            wrong[name] = (path, got, expected[role])
    assert wrong == {}, f"{role}: (path, got, expected) {wrong}"

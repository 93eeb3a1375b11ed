"""The read API behind bearer tokens, and a meta test that every URL needs some proof of
who is asking."""

import hashlib
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone

from calls.models import Call
from calls.outcomes import USAGE_FIELDS, CompletionReason
from tests.factories import make_agent, make_api_token, make_call, make_turn
from voiceagents.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def token():
    return make_api_token("crm")


@pytest.fixture
def raw(token):
    return token[1]


def bearer(raw_token: str) -> dict:
    return {"Authorization": f"Bearer {raw_token}"}


def sid(n: int) -> str:
    return f"CA{n:032d}"


# --- Authentication ---------------------------------------------------------------------


def assert_unauthorized(response):
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == "Bearer"
    assert "error" in response.json()
    assert "results" not in response.json() and "sid" not in response.json()


@pytest.fixture
def existing_call():
    return make_call(sid(1), agent=make_agent())


@pytest.mark.parametrize("path", ["/api/calls/", f"/api/calls/{sid(1)}/"])
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Token {raw}",
        "Basic {raw}",
        "{raw}",
        "Bearer va_not-a-real-token",
        "Bearer {raw}x",
    ],
)
def test_requests_without_a_valid_token_are_refused(
    client, existing_call, raw, path, authorization
):
    headers = {} if authorization is None else {"Authorization": authorization.format(raw=raw)}

    assert_unauthorized(client.get(path, headers=headers))


def test_inactive_token_is_refused(client, existing_call):
    token, raw = make_api_token("old", is_active=False)

    assert_unauthorized(client.get("/api/calls/", headers=bearer(raw)))
    token.refresh_from_db()
    assert token.last_used_at is None


def test_issued_token_is_accepted(client, existing_call, raw):
    response = client.get("/api/calls/", headers=bearer(raw))

    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_bearer_scheme_is_case_insensitive(client, existing_call, raw):
    response = client.get("/api/calls/", headers={"Authorization": f"bearer {raw}"})

    assert response.status_code == 200


def test_only_the_hash_of_a_token_is_stored(token):
    token, raw = token
    row = ApiToken.objects.filter(pk=token.pk).values().get()

    assert row["token_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith("va_")
    for value in row.values():
        assert raw not in str(value)
    assert ApiToken.find_active(raw) == token


def test_each_issue_gives_a_new_secret():
    token = ApiToken(name="x")
    first = token.issue()
    first_hash = token.token_hash
    second = token.issue()

    assert first != second
    assert token.token_hash != first_hash
    assert len(second) > 40  # 32 random bytes, URL-safe base64, plus the prefix


def test_use_updates_last_used_at(client, existing_call, token):
    token, raw = token
    assert token.last_used_at is None
    before = timezone.now()

    client.get("/api/calls/", headers=bearer(raw))

    token.refresh_from_db()
    assert token.last_used_at is not None
    assert before <= token.last_used_at <= timezone.now()


def test_api_ignores_a_staff_session(client, existing_call):
    # A logged-in superuser is no integration: the API wants a token, not a cookie.
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))

    assert_unauthorized(client.get("/api/calls/"))


def test_a_read_only_token_cannot_place_calls(client, existing_call, raw):
    response = client.post("/api/calls/", {}, headers=bearer(raw))

    assert response.status_code == 403  # the write scope places calls (test_outbound.py)
    assert Call.objects.count() == 1


# --- The call list ----------------------------------------------------------------------


@pytest.fixture
def five_calls():
    agent = make_agent(name="Reception")
    now = timezone.now()
    # Created oldest-last so list order cannot come from insertion order.
    return [
        make_call(sid(n), agent=agent, started_at=now - timedelta(minutes=10 * n))
        for n in range(5, 0, -1)
    ]


def test_list_is_newest_first_with_count(client, five_calls, raw):
    body = client.get("/api/calls/", headers=bearer(raw)).json()

    assert body["count"] == 5
    assert [c["sid"] for c in body["results"]] == [sid(n) for n in range(1, 6)]


def test_list_summary_fields(client, raw):
    call = make_call(
        sid(1),
        agent=make_agent(name="Reception"),
        status=Call.Status.COMPLETED,
        duration_s=12.5,
        completion_reason=CompletionReason.CALLER_HANGUP,
        input_tokens=100,
        output_tokens=40,
    )

    (summary,) = client.get("/api/calls/", headers=bearer(raw)).json()["results"]

    assert summary["sid"] == call.sid
    assert summary["from"] == call.from_number
    assert summary["to"] == call.to_number
    assert summary["agent"] == "Reception"
    assert summary["status"] == "completed"
    assert summary["direction"] == "inbound"
    assert summary["duration_s"] == 12.5
    assert summary["completion_reason"] == "caller_hangup"
    assert summary["usage"]["input_tokens"] == 100
    assert summary["usage"]["output_tokens"] == 40
    assert "turns" not in summary


def test_list_of_call_without_agent(client, raw):
    make_call(sid(1), agent=None)

    (summary,) = client.get("/api/calls/", headers=bearer(raw)).json()["results"]

    assert summary["agent"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("limit=2", [1, 2]),
        ("limit=2&offset=2", [3, 4]),
        ("offset=3", [4, 5]),
        ("limit=0", []),
        ("offset=10", []),
        ("limit=200", [1, 2, 3, 4, 5]),
    ],
)
def test_list_limit_and_offset(client, five_calls, raw, query, expected):
    body = client.get(f"/api/calls/?{query}", headers=bearer(raw)).json()

    assert body["count"] == 5
    assert [c["sid"] for c in body["results"]] == [sid(n) for n in expected]


@pytest.mark.parametrize(
    "query", ["limit=abc", "limit=-1", "limit=201", "limit=", "offset=-1", "offset=x", "limit=1.5"]
)
def test_list_bad_paging_is_a_bad_request(client, five_calls, raw, query):
    response = client.get(f"/api/calls/?{query}", headers=bearer(raw))

    assert response.status_code == 400
    assert "error" in response.json()


# --- One call ---------------------------------------------------------------------------


def test_detail_has_turns_in_spoken_order_usage_and_outcome(client, raw):
    usage = {name: i + 1 for i, name in enumerate(USAGE_FIELDS)}
    call = make_call(
        sid(7),
        agent=make_agent(name="Reception"),
        completion_reason=CompletionReason.OPENAI_ERROR,
        error_code="server_error",
        error_message="upstream went away",
        openai_error_count=3,
        openai_last_error="server_error",
        **usage,
    )
    # Saved out of order (a caller turn is transcribed after the agent's answer began).
    make_turn(call, 2400, "Sure, what is the order number?", "agent", item_id="item_b")
    make_turn(call, 0, "Hello, how can I help?", "agent", item_id="item_0")
    make_turn(call, 900, "I want to check my order", "caller", interrupted=False)
    make_turn(call, 5000, "It is", "agent", interrupted=True)

    response = client.get(f"/api/calls/{call.sid}/", headers=bearer(raw))

    assert response.status_code == 200
    body = response.json()
    assert body["sid"] == call.sid
    assert [(t["started_ms"], t["speaker"], t["text"]) for t in body["turns"]] == [
        (0, "agent", "Hello, how can I help?"),
        (900, "caller", "I want to check my order"),
        (2400, "agent", "Sure, what is the order number?"),
        (5000, "agent", "It is"),
    ]
    assert [t["interrupted"] for t in body["turns"]] == [False, False, False, True]
    assert body["turns"][0]["item_id"] == "item_0"
    assert body["usage"] == usage
    assert body["completion_reason"] == "openai_error"
    assert body["error_code"] == "server_error"
    assert body["error_message"] == "upstream went away"
    assert body["openai_errors"] == {"count": 3, "last": "server_error"}


def test_detail_of_unknown_call_is_404(client, existing_call, raw):
    response = client.get(f"/api/calls/{sid(99)}/", headers=bearer(raw))

    assert response.status_code == 404


# --- Every URL needs auth ---------------------------------------------------------------

# Reachable without any proof: the load balancer's probe and the admin login form itself.
# The API's schema and docs describe it; they hold no data.
PUBLIC = {"healthz", "admin:login", "api:openapi-json", "api:openapi-view"}
# Proven by Twilio's request signature instead (tests/test_webhooks.py).
TWILIO_SIGNED = {
    "twilio-voice",
    "twilio-stream-ended",
    "twilio-recording",
    "twilio-outbound-answer",
    "twilio-call-status",
}


def walk(patterns, prefix="", namespace=""):
    """(route text, namespaced name or "", pattern) for every endpoint of the URLconf."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
        if isinstance(pattern, URLResolver):
            ns = ":".join(n for n in (namespace, pattern.namespace) if n)
            yield from walk(pattern.url_patterns, route, ns)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield route, name or "", pattern


def sample_path(route: str) -> str:
    """A concrete path the route matches: `<conv:name>` → 1, `(?P<g>a|b)` → a, and a
    catch-all `(?P<g>.*)` → no-such-page/."""
    path = re.sub(r"\(\?P<\w+>\.\*\)", "no-such-page/", route)
    path = re.sub(r"\(\?P<\w+>([\w-]+)(?:\|[\w|-]+)?\)", r"\1", path)
    path = re.sub(r"<(?:\w+:)?\w+>", "1", path)
    assert not set(path) & set("()<>?*|^$\\"), f"cannot make a path for {route!r}"
    return "/" + path


ENDPOINTS = list(walk(get_resolver().url_patterns))


def test_url_walk_finds_the_known_endpoints():
    names = {name for _, name, _ in ENDPOINTS}

    assert {"api:list_calls", "api:get_call", "call-list", "call-hang-up"} <= names
    assert names >= PUBLIC | TWILIO_SIGNED
    assert len(ENDPOINTS) > 50  # the admin's model pages are included


@pytest.mark.parametrize(("route", "name", "pattern"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_every_url_needs_auth(client, existing_call, route, name, pattern):
    path = sample_path(route)
    # The API names one pattern per method of a path; the first serves them all.
    reached = resolve(path).route.lstrip("^").rstrip("$")
    assert reached == route, f"{path} does not reach {route}"
    login = reverse("admin:login")

    if name in PUBLIC:
        assert client.get(path).status_code == 200
        return
    if name == "api:api-root":  # django-ninja's empty root: nothing there for anyone
        assert client.get(path).status_code == 404
        return
    if name in TWILIO_SIGNED:
        assert client.post(path, {"CallSid": existing_call.sid}).status_code == 403
        return
    for method in (client.get, client.post):
        response = method(path)
        if route.startswith("api/"):
            if response.status_code != 405:  # the API only answers GET
                assert_unauthorized(response)
        else:
            # Staff pages and the admin send strangers to the login form; the admin's
            # logout goes there through the index.
            final = method(path, follow=True)
            assert response.status_code == 302, response
            assert final.redirect_chain[-1][0].startswith(login)
            assert final.resolver_match.view_name == "admin:login"


def test_staff_pages_refuse_a_logged_in_non_staff_user(client, existing_call):
    client.force_login(User.objects.create_user("someone", "s@example.com", "pw"))

    for path in ["/calls/", f"/calls/{existing_call.sid}/", "/admin/calls/call/"]:
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


# --- Scopes and expiry ------------------------------------------------------------------


def test_a_token_without_the_transcripts_scope_reads_calls_but_not_what_was_said(client):
    _, calls_only = make_api_token("billing", can_read_transcripts=False)
    call = make_call(sid(8), agent=make_agent(name="Reception"))
    make_turn(call, 0, "My card number is", "caller")

    listed = client.get("/api/calls/", headers=bearer(calls_only))
    detail = client.get(f"/api/calls/{call.sid}/", headers=bearer(calls_only))

    assert listed.status_code == 200 and listed.json()["count"] == 1
    assert detail.status_code == 200
    body = detail.json()
    assert body["sid"] == call.sid and body["duration_s"] == call.duration_s
    assert (body["turns"], body["transcript"], body["summary"], body["outcome"]) == (
        None,
        None,
        None,
        None,
    )
    assert "card number" not in detail.content.decode()


def test_a_token_without_the_calls_scope_is_forbidden(client, existing_call):
    _, write_only = make_api_token("writer", can_read_calls=False, can_write=True)

    response = client.get("/api/calls/", headers=bearer(write_only))

    assert response.status_code == 403
    assert "read_calls" in response.json()["error"]


def test_an_expired_token_is_refused(client, existing_call):
    past = timezone.now() - timedelta(minutes=1)
    _, expired = make_api_token("old", expires_at=past)
    _, current = make_api_token("new", expires_at=timezone.now() + timedelta(days=1))

    assert client.get("/api/calls/", headers=bearer(expired)).status_code == 401
    assert client.get("/api/calls/", headers=bearer(current)).status_code == 200

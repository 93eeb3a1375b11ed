"""Staff call pages: who may see them, what they show, and the hang-up request that travels
through the channel layer to whichever process holds the call."""

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from calls.views import call_group
from tests.factories import make_agent, make_call, make_turn

pytestmark = pytest.mark.django_db

SID = "CA" + "c" * 32


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_user("reviewer", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_call", "hang_up_call"])
    )
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def live_call():
    call = make_call(SID, agent=make_agent(name="Front desk"), from_number="+15550001111")
    make_turn(call, 300, "Hello, you have reached the bakery.")
    make_turn(call, 2100, "When do you open?", speaker="caller")
    make_turn(call, 3500, "We open at", interrupted=True)
    return call


def listen_to(call_sid: str) -> tuple:
    """Join the call's group as the consumer holding the call would."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(call_group(call_sid), channel)
    return layer, channel


def csrf_token(client: Client) -> str:
    """The token a staff page hands the browser (the admin index has a logout form)."""
    return client.get("/admin/").cookies["csrftoken"].value


def nothing_received(layer, channel) -> bool:
    async def wait_briefly():
        try:
            await asyncio.wait_for(layer.receive(channel), 0.2)
        except TimeoutError:
            return True
        return False

    return async_to_sync(wait_briefly)()


def test_anonymous_and_non_staff_users_are_sent_to_login(live_call):
    get_user_model().objects.create_user("caller", password="pw", is_staff=False)
    non_staff = Client()
    non_staff.login(username="caller", password="pw")
    for client in (Client(), non_staff):
        for path in ("/calls/", f"/calls/{SID}/", f"/calls/{SID}/turns"):
            response = client.get(path)
            assert response.status_code == 302
            assert response["Location"].startswith("/admin/login/")


def test_call_list_shows_each_call(staff_client, live_call):
    page = staff_client.get("/calls/").content.decode()

    assert SID in page
    assert "+15550001111" in page
    assert "Front desk" in page


def test_call_page_shows_turns_in_order_with_the_cut_one_marked(staff_client, live_call):
    page = staff_client.get(f"/calls/{SID}/").content.decode()

    greeting = page.index("Hello, you have reached the bakery.")
    question = page.index("When do you open?")
    answer = page.index("We open at")
    assert greeting < question < answer
    assert "interrupted" in page[answer:].lower()


def test_turns_fragment_has_new_turns_without_the_page_around_them(staff_client, live_call):
    make_turn(live_call, 5000, "Do you deliver?", speaker="caller")

    fragment = staff_client.get(f"/calls/{SID}/turns").content.decode()

    assert "Do you deliver?" in fragment
    assert "<html" not in fragment.lower()


def test_unknown_call_is_404(staff_client):
    assert staff_client.get(f"/calls/CA{'0' * 32}/").status_code == 404


def test_hang_up_reaches_the_consumer_holding_the_call(staff_client, live_call):
    layer, channel = listen_to(SID)
    token = csrf_token(staff_client)

    response = staff_client.post(f"/calls/{SID}/hang-up", {"csrfmiddlewaretoken": token})

    assert response.status_code == 302
    message = async_to_sync(layer.receive)(channel)
    assert message == {"type": "call.hangup", "by": "reviewer"}


def test_hang_up_without_csrf_token_is_refused(staff_client, live_call):
    layer, channel = listen_to(SID)

    response = staff_client.post(f"/calls/{SID}/hang-up")

    assert response.status_code == 403
    assert nothing_received(layer, channel)


def test_hang_up_is_post_only(staff_client, live_call):
    assert staff_client.get(f"/calls/{SID}/hang-up").status_code == 405


def test_hang_up_of_an_ended_call_sends_nothing(staff_client, live_call):
    live_call.ended_at = timezone.now()
    live_call.save()
    layer, channel = listen_to(SID)
    token = csrf_token(staff_client)

    response = staff_client.post(f"/calls/{SID}/hang-up", {"csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert nothing_received(layer, channel)


def test_times_show_in_the_staff_members_time_zone_with_its_name(staff_client, live_call):
    from calls.models import Call

    Call.objects.filter(pk=live_call.pk).update(started_at="2026-07-01T12:00:00Z")
    staff_client.cookies["tz"] = "America/New_York"
    local = staff_client.get("/calls/").content.decode()
    staff_client.cookies["tz"] = "Not/AZone"  # ignored: the server's zone (UTC) instead
    server = staff_client.get("/calls/").content.decode()

    assert "2026-07-01 08:00:00 EDT" in local
    assert "2026-07-01 12:00:00 UTC" in server


def test_calls_can_be_filtered_by_direction_and_by_how_they_ended(staff_client, live_call):
    from calls.models import Call
    from tests.factories import make_call

    make_call("CA" + "8" * 32, direction="outbound-api", completion_reason="no_answer")

    outbound = staff_client.get("/calls/?direction=outbound").context["page"]
    unanswered = staff_client.get("/calls/?completion_reason=no_answer").context["page"]
    inbound = staff_client.get("/calls/?direction=inbound").context["page"]

    assert [c.sid for c in outbound] == [c.sid for c in unanswered] == ["CA" + "8" * 32]
    assert live_call.sid in [c.sid for c in inbound]
    assert Call.objects.count() == 2


def test_the_live_now_list_refreshes_itself(staff_client, live_call):
    page = staff_client.get("/calls/?status=in-progress").content.decode()

    assert "<h1>Live now" in page and 'data-refresh-seconds="5"' in page
    assert "live_list.js" in page

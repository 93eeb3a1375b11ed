"""Credentials of agents' HTTP tools: header values stored encrypted, entered in the admin
but never shown back, decrypted for a call, and a key that can be rotated."""

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.db import connection

from tests.factories import make_agent, make_tool
from voiceagents import secret_box
from voiceagents.models import Tool, ToolHeader
from voiceagents.realtime import AgentConfig

pytestmark = pytest.mark.django_db

SECRET_VALUE = "Bearer sk-live-7f3a9c1d2e"


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def tool_form(**fields) -> dict:
    return {
        "name": "lookup_order",
        "kind": "http",
        "description": "Look up an order.",
        "parameters": '{"type": "object", "properties": {}}',
        "url": "http://127.0.0.1:9/orders",
        "method": "POST",
        "headers-TOTAL_FORMS": "1",
        "headers-INITIAL_FORMS": "0",
        "headers-MIN_NUM_FORMS": "0",
        "headers-MAX_NUM_FORMS": "1000",
        **fields,
    }


def stored_bytes_of_headers() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, sealed_value FROM voiceagents_toolheader")
        return repr(cursor.fetchall())


def test_a_header_added_in_the_admin_is_stored_encrypted_and_never_shown_back(staff_client):
    response = staff_client.post(
        "/admin/voiceagents/tool/add/",
        tool_form(**{"headers-0-name": "Authorization", "headers-0-value": SECRET_VALUE}),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    tool = Tool.objects.get()
    header = tool.headers.get()
    assert header.value() == SECRET_VALUE
    assert SECRET_VALUE not in stored_bytes_of_headers()
    assert "sk-live" not in stored_bytes_of_headers()
    page = staff_client.get(f"/admin/voiceagents/tool/{tool.pk}/change/").content.decode()
    assert "Authorization" in page
    assert "sk-live" not in page and header.sealed_value not in page
    assert tool.signing_secret.startswith("whsec_") and tool.signing_secret in page


def test_saving_again_with_the_value_left_blank_keeps_it(staff_client):
    tool = make_tool(url="http://127.0.0.1:9/orders")
    header = ToolHeader(tool=tool, name="X-Api-Key")
    header.set_value("k-123")
    header.save()
    form = tool_form(
        **{
            "name": tool.name,
            "headers-INITIAL_FORMS": "1",
            "headers-0-id": str(header.pk),
            "headers-0-tool": str(tool.pk),
            "headers-0-name": "X-Api-Key",
            "headers-0-value": "",
        }
    )

    response = staff_client.post(f"/admin/voiceagents/tool/{tool.pk}/change/", form)

    assert response.status_code == 302
    assert ToolHeader.objects.get().value() == "k-123"


@pytest.mark.parametrize(
    ("name", "value", "field", "message"),
    [
        ("Authorization", "", "value", "Enter the header's value."),
        ("Content-Type", "text/plain", "name", "Content-Type is set by the app itself."),
        ("X-Voiceagents-Signature", "v1=x", "name", "is set by the app itself"),
        ("Bad Name", "x", "name", "Use a header name"),
        ("X-Api-Key", "a\r\nX-Injected: 1", "value", "cannot hold line breaks"),
    ],
)
def test_bad_headers_are_refused_next_to_the_field(staff_client, name, value, field, message):
    response = staff_client.post(
        "/admin/voiceagents/tool/add/",
        tool_form(**{"headers-0-name": name, "headers-0-value": value}),
    )

    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.errors[0]
    assert message in " ".join(errors[field]), errors
    assert not Tool.objects.exists()


def test_a_call_gets_the_decrypted_headers_and_the_signing_secret():
    tool = make_tool()
    header = ToolHeader(tool=tool, name="Authorization")
    header.set_value(SECRET_VALUE)
    header.save()
    agent = make_agent(tools=[tool])

    config = AgentConfig.from_agent(agent).tool(tool.name)

    assert config.headers == (("Authorization", SECRET_VALUE),)
    assert config.signing_secret == tool.signing_secret
    assert config.unreadable == ""
    assert SECRET_VALUE not in repr(config)


def test_a_header_no_key_can_read_makes_the_tool_report_it_instead_of_sending_nothing(settings):
    tool = make_tool()
    header = ToolHeader(tool=tool, name="Authorization")
    header.set_value(SECRET_VALUE)
    header.save()
    settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key is gone

    config = AgentConfig.from_agent(make_agent(tools=[tool])).tool(tool.name)

    assert config.headers == ()
    assert "cannot be decrypted" in config.unreadable


def test_keys_rotate_new_first_and_old_still_reads(settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRETS_ENCRYPTION_KEYS = [old_key]
    sealed_with_old = secret_box.seal("v1")

    settings.SECRETS_ENCRYPTION_KEYS = [new_key, old_key]
    sealed_with_new = secret_box.seal("v2")

    assert secret_box.unseal(sealed_with_old) == "v1"
    settings.SECRETS_ENCRYPTION_KEYS = [new_key]
    assert secret_box.unseal(sealed_with_new) == "v2"
    with pytest.raises(secret_box.SecretUnreadable):
        secret_box.unseal(sealed_with_old)


def test_without_keys_the_key_comes_from_secret_key(settings):
    settings.SECRETS_ENCRYPTION_KEYS = []
    sealed = secret_box.seal("v")

    assert secret_box.unseal(sealed) == "v"
    settings.SECRET_KEY = "another-secret-key"
    with pytest.raises(secret_box.SecretUnreadable):
        secret_box.unseal(sealed)

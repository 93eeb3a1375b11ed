"""Agent versions: every change to an agent, from the console or the admin, is kept as a
snapshot of its settings and tools, with who made it and what changed. A call records
the version it ran with; restoring a version applies its settings as a new version."""

from django.db import transaction

# Not part of a version: identity and bookkeeping, and the webhook's signing secret (a
# secret is not copied into history, and restoring must not change it).
NOT_VERSIONED = {"id", "created_at", "updated_at", "archived_at", "completion_webhook_secret"}


def snapshot(agent) -> dict:
    """The agent's settings as JSON-able values, and its tools by name. Works on
    historical models too (migrations use it)."""
    settings = {
        field.name: field.value_from_object(agent)
        for field in agent._meta.concrete_fields
        if field.name not in NOT_VERSIONED
    }
    settings["tools"] = sorted(agent.tools.values_list("name", flat=True))
    return settings


def changes_between(before: dict, after: dict) -> dict:
    return {
        name: [before.get(name), value]
        for name, value in after.items()
        if before.get(name) != value
    }


def record_version(agent, user=None, note: str = ""):
    """Store the agent as it is now, unless nothing changed since its last version.
    Returns the agent's current version."""
    from voiceagents.models import Agent, AgentVersion

    with transaction.atomic():
        # One writer at a time per agent, so version numbers never collide.
        Agent.objects.select_for_update().filter(pk=agent.pk).first()
        last = agent.versions.order_by("-number").first()
        settings = snapshot(agent)
        changes = changes_between(last.settings, settings) if last else {}
        if last is not None and not changes:
            return last
        return AgentVersion.objects.create(
            agent=agent,
            number=(last.number + 1) if last else 1,
            created_by=user if user is not None and user.is_authenticated else None,
            note=note or ("created" if last is None else ""),
            settings=settings,
            changes=changes,
        )


def restore(agent, version, user=None):
    """Apply `version`'s settings and tools to the agent, as a new version. Tools since
    deleted are left out and named in the new version's note; settings no longer valid
    (a model since removed) raise ValidationError and change nothing."""
    from voiceagents.models import Tool

    settings = dict(version.settings)
    tool_names = settings.pop("tools", [])
    for name, value in settings.items():
        if hasattr(agent, name):
            setattr(agent, name, value)
    agent.full_clean()
    tools = list(Tool.objects.filter(name__in=tool_names))
    missing = sorted(set(tool_names) - {t.name for t in tools})
    with transaction.atomic():
        agent.save()
        agent.tools.set(tools)
        note = f"restored version {version.number}"
        if missing:
            note += f" (tools since deleted: {', '.join(missing)})"
        return record_version(agent, user, note=note[:200])

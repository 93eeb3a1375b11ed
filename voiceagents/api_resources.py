"""/api/agents, /api/tools, /api/numbers: read (read calls scope) and write (write scope)
the configuration, with the same validation as the console (each model's own clean()).
Agent changes are kept as versions, as from the console; deleting an agent archives it."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import ModelSchema, Router, Schema

from calls.models import PhoneNumber
from voiceagents.agent_form import AgentForm
from voiceagents.models import TOOL_SETTINGS, Agent, Tool
from voiceagents.rest_api import WRITE
from voiceagents.versions import record_version

agents = Router(tags=["agents"])
tools = Router(tags=["tools"])
numbers = Router(tags=["numbers"])

# What the API reads and writes of an agent: the console form's settings (its tools are
# a list of names here).
AGENT_SETTINGS = [name for name in AgentForm.Meta.fields if name != "tools"]


def bad_request(exc: ValidationError) -> JsonResponse:
    fields = {k: " ".join(v) for k, v in exc.message_dict.items()}
    summary = "; ".join(f"{k}: {v}" for k, v in fields.items())
    return JsonResponse({"error": summary, "fields": fields}, status=400)


def apply(obj, values: dict, also=()):
    """Set `values`, run the model's validation, save; a ValidationError saves nothing."""
    for name, value in values.items():
        setattr(obj, name, value)
    obj.full_clean(exclude=[f for f in ("signing_secret",) if hasattr(obj, f)])
    obj.save()
    for step in also:
        step(obj)
    return obj


# --- agents ------------------------------------------------------------------------------
class AgentOut(ModelSchema):
    tools: list[str]
    numbers: list[str]
    archived: bool
    version: int | None

    class Meta:
        model = Agent
        fields = ["id", *AGENT_SETTINGS]

    @staticmethod
    def resolve_tools(agent: Agent) -> list[str]:
        return [t.name for t in agent.tools.all()]

    @staticmethod
    def resolve_numbers(agent: Agent) -> list[str]:
        return [n.number for n in agent.phone_numbers.all()]

    @staticmethod
    def resolve_archived(agent: Agent) -> bool:
        return agent.archived_at is not None

    @staticmethod
    def resolve_version(agent: Agent) -> int | None:
        version = agent.current_version
        return version.number if version else None


class AgentIn(ModelSchema):
    tools: list[str] | None = None

    class Meta:
        model = Agent
        fields = AGENT_SETTINGS
        fields_optional = "__all__"


def set_tools(names: list[str] | None):
    def step(agent: Agent) -> None:
        if names is None:
            return
        found = list(Tool.objects.filter(name__in=names))
        missing = sorted(set(names) - {t.name for t in found})
        if missing:
            raise ValidationError({"tools": f"No tool named {', '.join(missing)}."})
        agent.tools.set(found)

    return step


def save_agent(request, agent: Agent, payload: AgentIn, status: int):
    values = payload.model_dump(exclude_unset=True)
    names = values.pop("tools", None)
    try:
        with transaction.atomic():
            apply(agent, values, also=[set_tools(names)])
            record_version(agent, None, note=f"through the API ({request.auth.name})")
    except ValidationError as exc:
        return bad_request(exc)
    return status, agent


@agents.get("/", response=list[AgentOut], summary="Agents (archived ones with ?archived=true)")
def list_agents(request: HttpRequest, archived: bool = False):
    return Agent.objects.filter(archived_at__isnull=not archived).prefetch_related(
        "tools", "phone_numbers"
    )


@agents.get("/{agent_id}", response=AgentOut)
def get_agent(request: HttpRequest, agent_id: int):
    return get_object_or_404(Agent, pk=agent_id)


@agents.post("/", response={201: AgentOut}, auth=WRITE)
def create_agent(request: HttpRequest, payload: AgentIn):
    return save_agent(request, Agent(), payload, 201)


@agents.patch("/{agent_id}", response=AgentOut, auth=WRITE, summary="Change some settings")
def update_agent(request: HttpRequest, agent_id: int, payload: AgentIn):
    return save_agent(request, get_object_or_404(Agent, pk=agent_id), payload, 200)


@agents.delete("/{agent_id}", auth=WRITE, summary="Archive an agent (no number may use it)")
def archive_agent(request: HttpRequest, agent_id: int):
    agent = get_object_or_404(Agent, pk=agent_id)
    if agent.phone_numbers.exists():
        return JsonResponse({"error": f"{agent.name} still answers a number"}, status=409)
    agent.archived_at = agent.archived_at or timezone.now()
    agent.save(update_fields=["archived_at"])
    return JsonResponse({}, status=204)


# --- tools -------------------------------------------------------------------------------


class ToolOut(ModelSchema):
    headers: list[str]

    class Meta:
        model = Tool
        fields = ["id", *TOOL_SETTINGS, "signing_secret"]

    @staticmethod
    def resolve_headers(tool: Tool) -> list[str]:
        return [h.name for h in tool.headers.all()]  # names only: values are write-only


class ToolIn(ModelSchema):
    class Meta:
        model = Tool
        fields = TOOL_SETTINGS
        fields_optional = "__all__"


def save_tool(tool: Tool, payload: ToolIn, status: int):
    try:
        with transaction.atomic():
            apply(tool, payload.model_dump(exclude_unset=True))
    except ValidationError as exc:
        return bad_request(exc)
    return status, tool


@tools.get("/", response=list[ToolOut])
def list_tools(request: HttpRequest):
    return Tool.objects.prefetch_related("headers")


@tools.get("/{tool_id}", response=ToolOut)
def get_tool(request: HttpRequest, tool_id: int):
    return get_object_or_404(Tool, pk=tool_id)


@tools.post("/", response={201: ToolOut}, auth=WRITE)
def create_tool(request: HttpRequest, payload: ToolIn):
    return save_tool(Tool(), payload, 201)


@tools.patch("/{tool_id}", response=ToolOut, auth=WRITE)
def update_tool(request: HttpRequest, tool_id: int, payload: ToolIn):
    return save_tool(get_object_or_404(Tool, pk=tool_id), payload, 200)


@tools.delete("/{tool_id}", auth=WRITE, summary="Delete a tool (agents lose it)")
def delete_tool(request: HttpRequest, tool_id: int):
    get_object_or_404(Tool, pk=tool_id).delete()
    return JsonResponse({}, status=204)


# --- numbers -----------------------------------------------------------------------------
class NumberOut(ModelSchema):
    class Meta:
        model = PhoneNumber
        fields = ["id", "number", "agent", "label"]


class NumberIn(Schema):
    number: str | None = None
    agent: int | None = None
    label: str | None = None


def save_number(phone: PhoneNumber, payload: NumberIn, status: int):
    values = payload.model_dump(exclude_unset=True)
    if "agent" in values:
        agent = Agent.objects.filter(pk=values.pop("agent"), archived_at__isnull=True).first()
        if agent is None:
            return JsonResponse({"error": "agent: no active agent with that id"}, status=400)
        values["agent"] = agent
    try:
        apply(phone, values)
    except ValidationError as exc:
        return bad_request(exc)
    return status, phone


@numbers.get("/", response=list[NumberOut])
def list_numbers(request: HttpRequest):
    return PhoneNumber.objects.all()


@numbers.post("/", response={201: NumberOut}, auth=WRITE)
def create_number(request: HttpRequest, payload: NumberIn):
    return save_number(PhoneNumber(), payload, 201)


@numbers.patch("/{number_id}", response=NumberOut, auth=WRITE)
def update_number(request: HttpRequest, number_id: int, payload: NumberIn):
    return save_number(get_object_or_404(PhoneNumber, pk=number_id), payload, 200)


@numbers.delete("/{number_id}", auth=WRITE)
def delete_number(request: HttpRequest, number_id: int):
    get_object_or_404(PhoneNumber, pk=number_id).delete()
    return JsonResponse({}, status=204)

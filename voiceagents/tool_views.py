"""The console's tool pages: the list, create and edit (parameters as rows or JSON
Schema, headers write-only), and "test this tool": sample arguments sent exactly as a
call would send them (checked against the schema, signed, with the headers, through
the egress policy), the reply shown. Django's tool permissions, as in the admin."""

import orjson
from asgiref.sync import async_to_sync
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from voiceagents.access import staff_permission_required
from voiceagents.models import Tool
from voiceagents.realtime import ToolConfig
from voiceagents.tool_forms import (
    HeaderRows,
    ParameterRows,
    ToolForm,
    rows_from_schema,
    schema_from_rows,
)
from voiceagents.tool_schema import argument_problem
from voiceagents.tools import run_http_tool, shared_http_client


@staff_permission_required("voiceagents.view_tool")
def tool_list(request: HttpRequest) -> HttpResponse:
    tools = Tool.objects.prefetch_related("agents")
    return render(request, "tools/tool_list.html", {"tools": tools})


def unbound_forms(tool: Tool) -> dict:
    """The tool page's three forms, filled from the stored tool."""
    return {
        "form": ToolForm(instance=tool),
        "rows": ParameterRows(prefix="param", initial=rows_from_schema(tool.parameters) or None),
        "headers": HeaderRows(instance=tool, prefix="headers"),
    }


def edit_tool(request: HttpRequest, tool: Tool | None) -> HttpResponse:
    instance = tool or Tool()
    if request.method != "POST":
        return render(request, "tools/tool_form.html", {"tool": tool, **unbound_forms(instance)})
    post = request.POST
    rows = ParameterRows(post, prefix="param")
    rows_schema = schema_from_rows([r for r in rows.cleaned_data if r]) if rows.is_valid() else None
    form = ToolForm(post, instance=instance, rows_schema=rows_schema)
    headers = HeaderRows(post, instance=instance, prefix="headers")
    if form.is_valid() and rows.is_valid() and headers.is_valid():
        with transaction.atomic():
            saved = form.save()
            headers.instance = saved
            headers.save()
        messages.success(request, f"Tool {saved.name} saved.")
        return redirect("tool-edit", saved.pk)
    return render(
        request,
        "tools/tool_form.html",
        {"form": form, "rows": rows, "headers": headers, "tool": tool},
    )


@staff_permission_required("voiceagents.view_tool", "voiceagents.add_tool")
def tool_create(request: HttpRequest) -> HttpResponse:
    return edit_tool(request, None)


@staff_permission_required("voiceagents.view_tool", "voiceagents.change_tool")
def tool_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return edit_tool(request, get_object_or_404(Tool, pk=pk))


@staff_permission_required("voiceagents.view_tool", "voiceagents.change_tool")
@require_POST
def tool_test(request: HttpRequest, pk: int) -> HttpResponse:
    tool = get_object_or_404(Tool.objects.prefetch_related("headers"), pk=pk)
    arguments = request.POST.get("arguments", "") or "{}"
    if tool.kind != Tool.Kind.HTTP:
        reply = "Only HTTP tools are sent anywhere; this one acts on the call itself."
    elif problem := argument_problem(arguments, tool.parameters):
        reply = f"Not sent: the arguments do not fit the parameters ({problem})."
    else:
        config = ToolConfig.from_tool(tool)
        reply = config.unreadable or async_to_sync(run_test)(config, arguments)
    return render(
        request,
        "tools/tool_form.html",
        {
            "tool": tool,
            "test_arguments": arguments,
            "test_reply": pretty(reply),
            **unbound_forms(tool),
        },
    )


async def run_test(config: ToolConfig, arguments: str) -> str:
    return await run_http_tool(
        shared_http_client(),
        config.url,
        config.name,
        arguments,
        "CA-test-from-the-console",
        headers=config.headers,
        signing_secret=config.signing_secret,
        method=config.method,
        timeout_s=config.timeout_s,
    )


def pretty(reply: str) -> str:
    try:
        return orjson.dumps(orjson.loads(reply), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return reply

"""Where Daphne's CPU goes: py-spy's collapsed stacks summarised by component and by
function, so the report can say what dominates the per-frame hot path."""

import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")
# The first match names the component of a frame, from its file path.
COMPONENTS = [
    ("calls/bridge.py", "app: calls/bridge.py"),
    ("calls/consumers.py", "app: calls/consumers.py"),
    ("calls/", "app: calls/ (other)"),
    ("voiceagents/", "app: voiceagents/"),
    ("channels/", "channels"),
    ("daphne/", "daphne"),
    ("autobahn/", "autobahn (Twilio-side WebSocket)"),
    ("txaio/", "autobahn (Twilio-side WebSocket)"),
    ("twisted/", "twisted reactor and TCP"),
    ("websockets/", "websockets (OpenAI-side client)"),
    ("asgiref/", "asgiref (sync/async threads)"),
    ("django/", "django (views, ORM)"),
    ("sqlite3/", "sqlite3"),
    ("psycopg", "psycopg"),
    ("redis/", "redis client"),
    ("channels_redis/", "channels_redis"),
    ("asyncio/", "asyncio event loop"),
    ("concurrent/", "thread pool"),
    ("threading.py", "thread pool"),
    ("logging/", "logging"),
]


def component(file: str) -> str:
    for needle, name in COMPONENTS:
        if needle in file:
            return name
    return "other: " + Path(file).name if file else "other (native)"


def parse(raw: str) -> list[tuple[list[tuple[str, str]], int]]:
    """[(frames root→leaf as (function, file), samples)] from py-spy's raw output."""
    stacks = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for text in stack.split(";"):
            match = FRAME.match(text)
            if match:
                frames.append((match["func"], match["file"]))
            else:
                frames.append((text, ""))
        stacks.append((frames, int(count)))
    return stacks


# With --native, py-spy also samples threads waiting for work; these leaves and frames
# mark them (the event loop in epoll, an idle thread-pool worker).
IDLE_LEAVES = ("epoll_wait", "epoll_pwait")
IDLE_FRAMES = ("_queue_SimpleQueue_get",)
REACTOR_RUN = "AsyncioSelectorReactor.run"


def is_idle(frames: list[tuple[str, str]]) -> bool:
    return frames[-1][0] in IDLE_LEAVES or any(f in IDLE_FRAMES for f, _ in frames)


def callback(frames: list[tuple[str, str]]) -> str:
    """The event-loop callback a sample is in: the first Python frame under the reactor."""
    runs = [i for i, (func, _) in enumerate(frames) if func == REACTOR_RUN]
    if not runs:
        return "(other threads)"
    for func, file in frames[runs[-1] + 1 :]:
        if file.endswith(".py"):
            return f"{func} ({_short(file)})"
    return "(the event loop's own C code)"


def leaf_kind(frames: list[tuple[str, str]]) -> str:
    func, file = frames[-1]
    if file.startswith("libc"):
        return "libc (unnamed)" if func.startswith("0x") else f"system call or libc: {func}"
    return "CPU in Python or C code"


def summarize(raw_path: Path, top: int = 12, native: bool = False) -> str:
    stacks = parse(raw_path.read_text())
    if native:
        stacks = [(frames, n) for frames, n in stacks if not is_idle(frames)]
    total = sum(n for _, n in stacks) or 1
    own_by_component: Counter = Counter()
    own_by_function: Counter = Counter()
    inclusive_by_component: Counter = Counter()
    for frames, n in stacks:
        func, file = frames[-1]
        own_by_component[component(file)] += n
        own_by_function[f"{func} ({_short(file)})"] += n
        for name in {component(f) for _, f in frames}:
            inclusive_by_component[name] += n

    def table(title: str, counts: Counter) -> list[str]:
        lines = [f"{title}:"]
        for name, n in counts.most_common(top):
            lines.append(f"  {100 * n / total:5.1f}%  {name}")
        return lines

    lines = [
        f"{total} samples of Daphne's busy threads (py-spy{' --native' if native else ''}, "
        "100 Hz, idle excluded)",
        *table("Own time by component (the frame on top of the stack)", own_by_component),
        *table("Inclusive time by component (anywhere on the stack)", inclusive_by_component),
        *table("Own time by function", own_by_function),
    ]
    if native:
        lines += table(
            "Event-loop callback (first Python frame under the reactor)",
            _count(stacks, callback),
        )
        lines += table("Leaf of the stack", _count(stacks, leaf_kind))
    return "\n".join(lines)


def _count(stacks: list[tuple[list[tuple[str, str]], int]], key) -> Counter:
    counts: Counter = Counter()
    for frames, n in stacks:
        counts[key(frames)] += n
    return counts


def _short(file: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file

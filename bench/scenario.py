"""What every simulated call does, shared by the fake OpenAI server and the callers.

`CallPlan` (the default): greeting (agent) → question (caller) → long answer (agent) →
the caller barges in → short answer (agent) → a moment of silence → the caller hangs up.

`ToolCallPlan` (`--plan tools`): a tool on every turn, the caller talking while a slow
tool runs, a recoverable OpenAI error, and the OpenAI connection dropped mid-answer.
"""

from dataclasses import asdict, dataclass

from tests.fakes.realtime_server import RealtimeScript, Reply

# Shared with the Daphne processes (DEBUG=false needs every secret set).
AUTH_TOKEN = "bench-twilio-auth-token"
ACCOUNT_SID = "AC" + "b" * 32
OPENAI_KEY = "sk-bench"
SECRET_KEY = "bench-secret-key-" + "x" * 40
AGENT_NUMBER = "+15550003333"
TOOL_NAME = "lookup_order"
TOOL_CALLS_PER_CALL = 3  # in ToolCallPlan
SLOW_ORDER = "slow"  # the bench tool server answers this order after ToolCallPlan.slow_tool_ms


def model_script(plan, replies: list[Reply], transcripts: list[str]) -> RealtimeScript:
    """What the fake model says and hears, at the plan's latency and audio pace."""
    return RealtimeScript(
        replies=replies,
        caller_transcripts=transcripts,
        reply_delay_ms=plan.reply_delay_ms,
        audio_chunk_ms=plan.chunk_ms,
        audio_speed=plan.audio_speed,
        api_key=OPENAI_KEY,
    )


@dataclass(frozen=True)
class CallPlan:
    kind: str = "standard"
    reply_delay_ms: int = 200  # the fake model's latency before every response
    greeting_ms: int = 4000
    question_ms: int = 1500
    answer_ms: int = 12000  # long enough to be cut off
    barge_after_ms: int = 4000  # of the answer heard before the caller talks over it
    barge_ms: int = 1000
    final_ms: int = 4000
    silence_before_hangup_ms: int = 1000
    chunk_ms: int = 50  # audio per response.output_audio.delta
    # Faster than real time, like the real API, so the caller has audio queued to clear.
    audio_speed: float = 2.0

    def script(self) -> RealtimeScript:
        return model_script(
            self,
            [
                Reply(text="Hello, you have reached the bench bakery.", audio_ms=self.greeting_ms),
                Reply(
                    text="We open at eight and close at six every day. " * 3,
                    audio_ms=self.answer_ms,
                ),
                Reply(text="Yes, we deliver within five miles.", audio_ms=self.final_ms),
            ],
            ["When do you open?", "Do you deliver?"],
        )

    def to_json(self) -> dict:
        return asdict(self)

    def resume_script(self) -> RealtimeScript | None:
        return None  # this plan never reconnects


@dataclass(frozen=True)
class ToolCallPlan:
    """Session one: greeting → question → the model calls the tool (slow) → 1.2 s later
    the caller says "uh-huh" while the tool still runs, and the response server VAD starts
    for it fails with a recoverable `error` (null code) → the tool answers and the agent
    speaks its result → second question → the tool again (fast) → the agent's answer,
    during which the fake drops the connection. Session two (the app's reconnect, told
    the conversation so far): the agent picks up → third question → the tool (fast) →
    the answer → silence → the caller hangs up. Three tool calls per call."""

    kind: str = "tools"
    reply_delay_ms: int = 200
    greeting_ms: int = 2000
    question_ms: int = 1000
    # After the question ends: VAD silence (500 ms) + the reply delay put the function call
    # at ~0.7 s, so the caller talks over the running tool, not over the model's decision.
    uh_huh_after_ms: int = 1200
    uh_huh_ms: int = 500
    slow_tool_ms: int = 3000
    answer_ms: int = 3000
    dropped_after_chunks: int = 10  # of the second answer, then the TCP connection drops
    resumed_ms: int = 2000
    silence_before_hangup_ms: int = 1000
    chunk_ms: int = 50
    audio_speed: float = 2.0

    def script(self) -> RealtimeScript:
        return model_script(
            self,
            [
                Reply(text="Hello, you have reached the bench bakery.", audio_ms=self.greeting_ms),
                Reply(function_call=(TOOL_NAME, {"order": SLOW_ORDER})),
                Reply(error=("server_error", None)),  # the response for "uh-huh"
                Reply(text="Your order 1 is out for delivery.", audio_ms=self.answer_ms),
                Reply(function_call=(TOOL_NAME, {"order": "2"})),
                Reply(
                    text="Order 2 is ready for pickup at the front counter. " * 2,
                    audio_ms=self.answer_ms,
                    close_after_chunks=self.dropped_after_chunks,
                ),
            ],
            ["Where is order one?", "Uh-huh.", "And order two?"],
        )

    def resume_script(self) -> RealtimeScript:
        """For the session the app opens after the drop (it replays the conversation)."""
        return model_script(
            self,
            [
                Reply(text="Sorry, as I said, order 2 is ready.", audio_ms=self.resumed_ms),
                Reply(function_call=(TOOL_NAME, {"order": "3"})),
                Reply(text="Order 3 ships tomorrow.", audio_ms=self.answer_ms),
            ],
            ["And order three?"],
        )

    def to_json(self) -> dict:
        return asdict(self)


Plan = CallPlan | ToolCallPlan
PLANS = {"standard": CallPlan, "tools": ToolCallPlan}


def plan_from_json(data: dict) -> Plan:
    return PLANS[data.get("kind", "standard")](**data)

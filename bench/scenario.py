"""What every simulated call does, shared by the fake OpenAI server and the callers.

greeting (agent) → question (caller) → long answer (agent) → the caller barges in →
short answer (agent) → a moment of silence → the caller hangs up.
"""

from dataclasses import asdict, dataclass

from tests.fakes.realtime_server import RealtimeScript, Reply

# Shared with the Daphne processes (DEBUG=false needs every secret set).
AUTH_TOKEN = "bench-twilio-auth-token"
ACCOUNT_SID = "AC" + "b" * 32
OPENAI_KEY = "sk-bench"
SECRET_KEY = "bench-secret-key-" + "x" * 40
AGENT_NUMBER = "+15550003333"


@dataclass(frozen=True)
class CallPlan:
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
        return RealtimeScript(
            replies=[
                Reply(text="Hello, you have reached the bench bakery.", audio_ms=self.greeting_ms),
                Reply(
                    text="We open at eight and close at six every day. " * 3,
                    audio_ms=self.answer_ms,
                ),
                Reply(text="Yes, we deliver within five miles.", audio_ms=self.final_ms),
            ],
            caller_transcripts=["When do you open?", "Do you deliver?"],
            reply_delay_ms=self.reply_delay_ms,
            audio_chunk_ms=self.chunk_ms,
            audio_speed=self.audio_speed,
            api_key=OPENAI_KEY,
        )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "CallPlan":
        return cls(**data)

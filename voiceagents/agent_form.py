"""The console's agent form: every setting with its unit, range and what it does, grouped
as staff think of an agent. Validation is the model's own (Agent.clean and the field
validators), so the admin and the console refuse the same things."""

from django import forms

from voiceagents.model_catalog import REALTIME_MODELS
from voiceagents.models import Agent, Tool, TurnDetection

# (legend, fields, which turn-detection mode they belong to, if one)
SECTIONS = [
    ("The agent", ["name", "model", "reasoning_effort", "voice", "speed"], None),
    ("What it says", ["instructions", "greeting"], None),
    ("Turn taking", ["turn_detection", "interrupt_response"], None),
    (
        "Server VAD",
        ["vad_threshold", "vad_prefix_padding_ms", "vad_silence_duration_ms", "idle_timeout_ms"],
        TurnDetection.SERVER_VAD,
    ),
    ("Semantic VAD", ["semantic_eagerness"], TurnDetection.SEMANTIC_VAD),
    (
        "During the call",
        ["end_call_enabled", "transfer_to", "max_call_duration_s", "dtmf_to_model", "tools"],
        None,
    ),
    ("Calling out", ["machine_detection", "voicemail_message"], None),
    (
        "Hearing the caller",
        [
            "noise_reduction",
            "input_transcription_model",
            "input_transcription_keywords",
            "input_transcription_languages",
        ],
        None,
    ),
    (
        "After the call",
        [
            "record_calls",
            "transcript_mode",
            "transcript_vocabulary",
            "outcome_schema",
            "completion_webhook_url",
        ],
        None,
    ),
]

LABELS = {
    "reasoning_effort": "Reasoning effort",
    "speed": "Speaking speed (0.25–1.5)",
    "vad_threshold": "Speech threshold (0–1)",
    "vad_prefix_padding_ms": "Audio kept before speech starts (ms)",
    "vad_silence_duration_ms": "Silence that ends the caller's turn (ms)",
    "idle_timeout_ms": "Re-prompt a silent caller after (ms)",
    "semantic_eagerness": "Eagerness",
    "interrupt_response": "Callers can interrupt",
    "max_call_duration_s": "Longest call (s)",
    "input_transcription_model": "Live transcription of the caller",
    "input_transcription_keywords": "Words to expect",
    "input_transcription_languages": "Languages",
    "record_calls": "Record calls",
    "transcript_mode": "Post-call transcript",
    "transcript_vocabulary": "Vocabulary prompt",
    "outcome_schema": "Outcome to extract (JSON Schema)",
    "completion_webhook_url": "Completion webhook URL",
}
HELP = {
    "name": "Shown to staff, and how the agent introduces itself if the instructions ask.",
    "voice": "marin and cedar sound the most natural. The voice cannot change once the "
    "agent has spoken in a call.",
    "speed": "1.0 is natural; 1.1–1.2 suits short confirmations, below 1.0 suits callers "
    "who need time. Pitch does not change.",
    "instructions": "Who the agent is, what it knows and how it behaves: the system prompt. "
    "Say what to do when it cannot help.",
    "turn_detection": "Server VAD ends the caller's turn after a set silence: predictable, "
    "the usual choice on the phone. Semantic VAD lets the model judge whether the caller "
    "has finished, so it interrupts less but may answer later.",
    "vad_threshold": "Typical 0.5. Raise it (0.6–0.8) for noisy lines so background noise "
    "does not count as speech.",
    "vad_prefix_padding_ms": "Typical 300. Audio kept from just before speech was detected, "
    "so first syllables are not cut.",
    "vad_silence_duration_ms": "Typical 500 (100–10,000). Shorter answers faster but cuts "
    "in when callers pause.",
    "idle_timeout_ms": "1,000–60,000. Empty: wait for the caller as long as it takes.",
    "semantic_eagerness": "Low waits longer for the caller to finish; high answers sooner.",
    "interrupt_response": "On: the agent stops talking when the caller speaks (barge-in).",
    "end_call_enabled": "On: the agent hangs up after its goodbye when the caller is done "
    "(the built-in end_call tool). Off: only the caller or staff end calls.",
    "max_call_duration_s": "30–14,400. The agent says goodbye and hangs up then. Empty: no limit.",
    "tools": "HTTP tools the agent may call during the conversation (edit them under Tools).",
    "completion_webhook_url": "POSTed when a call ends and again when its transcript is "
    "ready, signed with the agent's webhook secret (shown on the agent's page).",
    "noise_reduction": "Near field for phones and headsets held close (most calls); far "
    "field for speakerphones and rooms; off for clean lines.",
}


class AgentForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = [name for _, names, _ in SECTIONS for name in names]
        labels = LABELS
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 8}),
            "greeting": forms.Textarea(attrs={"rows": 2}),
            "input_transcription_keywords": forms.Textarea(attrs={"rows": 3}),
            "transcript_vocabulary": forms.Textarea(attrs={"rows": 2}),
            "outcome_schema": forms.Textarea(attrs={"rows": 4, "class": "code"}),
            "tools": forms.CheckboxSelectMultiple,
            "completion_webhook_url": forms.URLInput,
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, text in HELP.items():
            self.fields[name].help_text = text
        self.fields["instructions"].required = True
        self.fields["model"].choices = [(m.name, m.choice_label()) for m in REALTIME_MODELS]
        self.fields["tools"].queryset = Tool.objects.exclude(kind=Tool.Kind.END_CALL)
        self.fields["completion_webhook_url"].assume_scheme = "https"

    def sections(self):
        """(legend, bound fields, mode) for the template, in the order above."""
        return [(legend, [self[n] for n in names], mode) for legend, names, mode in SECTIONS]


def model_table() -> list[dict]:
    """What each model costs and is good for, shown beside the model choice."""
    return [
        {
            "name": m.name,
            "note": m.note,
            "in_per_min": m.prices.audio_in_per_min(),
            "out_per_min": m.prices.audio_out_per_min(),
            "call_minute": m.prices.call_minute_estimate(),
            "reasoning": m.reasoning,
        }
        for m in REALTIME_MODELS
    ]

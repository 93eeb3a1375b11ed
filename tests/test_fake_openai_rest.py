"""The fake OpenAI REST endpoints refuse what OpenAI refuses (each refusal is also a
recorded violation, which fails the app's tests) and answer good requests in the shapes
of openai-python's types."""

import httpx
import pytest

from tests.fakes.openai_rest import FakeOpenAI
from tests.fakes.voices import VoiceBank
from tests.live import BackgroundLoop
from tests.post_call.synth import dual_wav, tone

KEY = "sk-fake-test"


@pytest.fixture(scope="module")
def loop():
    background = BackgroundLoop()
    yield background
    background.close()


@pytest.fixture
def fake(loop):
    server = FakeOpenAI(voice_bank=VoiceBank(), api_key=KEY)
    loop.run(server.start())
    yield server
    loop.run(server.stop())


def wav(seconds: float, bank: VoiceBank | None = None) -> bytes:
    if bank is None:
        return dual_wav(seconds, [(0.5, seconds - 0.5, 700)], [])
    agent = bank.say("agent", "Hello, bakery, how can I help?", 2000)
    caller = bank.say("caller", "Hi, this is Maria.", 1500)
    return dual_wav(seconds, [(2.5, 4.0, caller)], [(0.2, 2.2, agent)])


def clip_url(seconds: float, freq: int) -> str:
    from transcripts.audio import wav_data_url

    return wav_data_url(tone(seconds, freq), 8000)


def transcribe(fake, data: dict, audio: bytes, key: str = KEY) -> httpx.Response:
    return httpx.post(
        fake.base_url + "/audio/transcriptions",
        data=data,
        files={"file": ("a.wav", audio, "audio/wav")},
        headers={"Authorization": f"Bearer {key}"},
    )


DIARIZE = {"model": "gpt-4o-transcribe-diarize", "response_format": "diarized_json"}


@pytest.mark.parametrize(
    ("fields", "seconds", "problem"),
    [
        (DIARIZE | {"prompt": "bakery words"}, 5, "prompt"),
        (DIARIZE, 31, "chunking_strategy"),
        ({"model": "gpt-4o-transcribe", "response_format": "text"}, 5, "response_format"),
        ({"model": "gpt-4o-transcribe", "response_format": "diarized_json"}, 5, "response_format"),
        ({"model": "gpt-4o-transcribe", "keywords[]": ["sourdough"]}, 5, "keywords"),
        ({"model": "whisper-2"}, 5, "model"),
        (DIARIZE | {"chunking_strategy": "auto", "speed": "2"}, 5, "speed"),
        (DIARIZE | {"known_speaker_names[]": ["agent"]}, 5, "same length"),
    ],
)
def test_requests_openai_refuses_are_refused_and_recorded(fake, fields, seconds, problem):
    response = transcribe(fake, fields, wav(seconds))
    assert response.status_code == 400
    assert problem in response.json()["error"]["message"]
    assert len(fake.violations) == 1 and problem in fake.violations[0]


def test_a_reference_clip_must_last_two_to_ten_seconds(fake):
    fields = DIARIZE | {
        "known_speaker_names[]": ["agent"],
        "known_speaker_references[]": [clip_url(1.0, 700)],
    }
    response = transcribe(fake, fields, wav(5))
    assert response.status_code == 400 and "between 2 and 10 seconds" in response.text


def test_a_wrong_key_is_401(fake):
    assert transcribe(fake, DIARIZE, wav(5), key="sk-other").status_code == 401


def test_diarized_answer_with_letters_and_with_known_speakers(fake):
    audio = wav(5, fake.bank)
    body = transcribe(fake, DIARIZE, audio).json()
    assert body["task"] == "transcribe" and body["usage"]["type"] == "duration"
    assert [(s["speaker"], s["text"]) for s in body["segments"]] == [
        ("A", "Hello, bakery, how can I help?"),
        ("B", "Hi, this is Maria."),
    ]
    assert body["segments"][1]["start"] == pytest.approx(2.5, abs=0.1)
    assert body["segments"][0]["type"] == "transcript.text.segment"

    agent_freq = fake.bank.utterances()[0].freq_hz
    named = transcribe(
        fake,
        DIARIZE
        | {
            "known_speaker_names[]": ["agent"],
            "known_speaker_references[]": [clip_url(3, agent_freq)],
        },
        audio,
    ).json()
    assert [s["speaker"] for s in named["segments"]] == ["agent", "A"]
    assert fake.violations == []


def test_json_answer_of_the_standard_model(fake):
    body = transcribe(
        fake, {"model": "gpt-4o-transcribe", "prompt": "bakery"}, wav(5, fake.bank)
    ).json()
    assert body["text"] == "Hello, bakery, how can I help? Hi, this is Maria."
    assert body["usage"]["type"] == "tokens"
    assert fake.rest.transcription_requests()[0]["fields"]["prompt"] == "bakery"


def respond(fake, payload: dict) -> httpx.Response:
    return httpx.post(
        fake.base_url + "/responses", json=payload, headers={"Authorization": f"Bearer {KEY}"}
    )


STRICT = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
    "additionalProperties": False,
}


def fmt(schema: dict, strict: bool = True) -> dict:
    return {
        "format": {
            "type": "json_schema",
            "name": "call_summary",
            "schema": schema,
            "strict": strict,
        }
    }


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({**STRICT, "additionalProperties": True}, "additionalProperties"),
        ({**STRICT, "required": []}, "required"),
        ({**STRICT, "properties": {"summary": {"type": "string", "minLength": 3}}}, "minLength"),
    ],
)
def test_a_schema_strict_mode_refuses_is_refused(fake, schema, problem):
    response = respond(fake, {"model": "gpt-5-mini", "input": "hi", "text": fmt(schema)})
    assert response.status_code == 400 and problem in response.json()["error"]["message"]
    assert fake.violations


def test_unknown_fields_and_models_are_refused(fake):
    assert (
        respond(fake, {"model": "gpt-5-mini", "input": "hi", "reponse_format": {}}).status_code
        == 400
    )
    assert respond(fake, {"model": "davinci", "input": "hi"}).status_code == 400


def test_a_good_structured_request_gets_a_response_object(fake):
    response = respond(
        fake,
        {
            "model": "gpt-5-mini",
            "instructions": "Summarise.",
            "store": False,
            "input": [
                {"role": "user", "content": "[00:01] A: Hello.\n[00:02] B: Hi, this is Maria."}
            ],
            "text": fmt(STRICT),
        },
    )
    body = response.json()
    assert response.status_code == 200 and body["status"] == "completed"
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    text = body["output"][1]["content"][0]["text"]
    assert text.startswith('{"summary":') and "Maria" in text
    assert body["usage"]["input_tokens"] > 0
    assert fake.violations == []


def test_the_realtime_websocket_shares_the_port(fake, loop):
    from voiceagents import realtime

    async def connect():
        connection = await realtime.connect(fake.base_url, KEY, "gpt-realtime", open_timeout=5)
        await connection.close()

    loop.run(connect())
    assert len(fake.realtime.sessions) == 1


def test_scripted_faults_are_not_violations(fake):
    fake.rest.fail_transcriptions_with([503])
    assert transcribe(fake, DIARIZE, wav(5)).status_code == 503
    assert transcribe(fake, DIARIZE, wav(5)).status_code == 200
    assert fake.violations == []

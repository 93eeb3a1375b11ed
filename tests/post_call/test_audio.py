"""The recording as numbers: channels, speech spans, clips and the cuts of long calls."""

import itertools

import numpy as np
import pytest

from tests.post_call.synth import RATE, dual_wav
from transcripts import audio


def recording(**kw) -> audio.Audio:
    return audio.read_wav(
        dual_wav(
            kw.pop("duration_s", 10.0),
            kw.pop("caller", [(4.0, 7.0, 300)]),
            kw.pop("agent", [(0.5, 3.5, 700)]),
            **kw,
        )
    )


def test_reads_twilio_wav_with_both_channels():
    decoded = recording()
    assert decoded.channels == 2 and decoded.rate == RATE
    assert decoded.duration_s == pytest.approx(10.0)


def test_not_a_wav_is_a_clear_error():
    with pytest.raises(audio.AudioError):
        audio.read_wav(b"RIFF....not audio")


def test_speech_spans_find_each_utterance_of_one_channel():
    decoded = recording(caller=[(1.0, 2.0, 300), (2.2, 3.0, 300), (5.0, 6.0, 300)], agent=[])
    spans = audio.speech_spans(decoded.channel(1), RATE, min_silence_s=0.5)
    # A 0.2 s pause does not end an utterance; a 2 s one does.
    assert spans == [
        (pytest.approx(1.0, abs=0.03), pytest.approx(3.0, abs=0.03)),
        (pytest.approx(5.0, abs=0.03), pytest.approx(6.0, abs=0.03)),
    ]


def test_dominant_channel_names_the_side_that_speaks_despite_echo():
    decoded = recording(bleed=0.1)
    assert audio.dominant_channel(decoded, 0.6, 3.4) == audio.AGENT_CHANNEL
    assert audio.dominant_channel(decoded, 4.1, 6.9) == audio.CALLER_CHANNEL
    assert audio.dominant_channel(decoded, 7.5, 9.5) is None  # silence


def test_crosstalk_has_no_dominant_channel():
    decoded = recording(caller=[(1.0, 3.0, 300)], agent=[(1.0, 3.0, 700)])
    assert audio.dominant_channel(decoded, 1.0, 3.0) is None


def test_voice_clip_takes_only_solo_speech_within_openai_bounds():
    decoded = recording(
        caller=[(2.0, 4.0, 300), (5.0, 15.0, 300)], agent=[(0.0, 3.0, 700)], duration_s=16.0
    )
    clip = audio.voice_clip(decoded, audio.CALLER_CHANNEL)
    # 2.0–3.0 overlaps the agent and is left out; the clip stops at 8 s.
    assert len(clip) / RATE == pytest.approx(8.0, abs=0.05)
    assert audio.voice_clip(recording(caller=[(1.0, 2.5, 300)]), audio.CALLER_CHANNEL) is None


def test_long_audio_is_cut_in_silences_into_pieces_under_the_limit():
    # Speech everywhere but for short pauses every 7 s.
    spans = [(t, t + 6.5, 300) for t in np.arange(0.0, 60.0, 7.0)]
    decoded = recording(caller=spans, agent=[], duration_s=63.0)
    cuts = audio.cut_points(decoded.mono(), RATE, max_piece_s=20.0)
    bounds = [0.0, *cuts, decoded.duration_s]
    assert all(b - a <= 20.0 for a, b in itertools.pairwise(bounds))
    for cut in cuts:  # every cut lands in a pause, not in a word
        assert any(start + 6.5 <= cut <= start + 7.0 for start, _, _ in spans), cut
    pieces = audio.pieces(decoded, 20.0)
    assert sum(len(samples) for _, samples in pieces) == pytest.approx(63.0 * RATE, abs=2)
    assert [offset for offset, _ in pieces] == [0.0, *cuts]


def test_wav_round_trip_and_data_url():
    samples = np.linspace(-0.5, 0.5, RATE)
    decoded = audio.read_wav(audio.wav_bytes(samples, RATE))
    assert decoded.channels == 1
    assert np.allclose(decoded.channel(1), samples, atol=1e-4)
    assert audio.wav_data_url(samples, RATE).startswith("data:audio/wav;base64,UklGR")

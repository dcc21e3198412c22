"""Where the speech is in a clip: Silero's voice activity detector (the `silero-vad` package, whose ONNX model
runs in ONNX Runtime: a graph, no code, shipped in the package), so that a recording with silence, a click, a
breath or a cough around the spoken word is classified by its spoken part. A clip without speech is said to
have none; one with more speech than the model hears is said to, and its longest stretch is what is heard.

The audio extra installs `silero-vad` and ONNX Runtime (not silero's own `audio` extra, which pins torchaudio)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from pydantic import ConfigDict, Field

from ensayo.recipe import Strict

RATES = (8000, 16000)  # what the detector hears; other rates are resampled for it
# The detector misses quiet speech (2 % of FSDD's clips at their own level, 0.1 % levelled): it hears each
# clip with its loudest 30 ms brought to LEVEL_DB, gained by at most MAX_GAIN_DB, so that a take of
# nothing but a quiet room's hiss is not made as loud as a voice.
FRAME_SECONDS = 0.03
TAIL = 0.25  # seconds: the detector's stretches outlast the speech by 0.1-0.2 s
LEVEL_DB = -18.0
MAX_GAIN_DB = 30.0


class SpeechConfig(Strict):
    """Find the speech first (`preprocessing.speech: {}`), then trim, level and centre it."""

    model_config = ConfigDict(**Strict.model_config, frozen=True)  # a key of the per-file cache

    threshold: float = Field(0.3, gt=0, lt=1, description="the detector's probability of speech that counts")
    min_speech: float = Field(0.1, ge=0, description="seconds: shorter bursts are not speech")
    min_silence: float = Field(0.15, ge=0, description="seconds: shorter pauses do not split speech in two")
    padding: float = Field(0.06, ge=0, description="seconds kept on either side of the speech")


@dataclass(frozen=True)
class Speech:
    """The stretches of speech of a clip, in seconds; `main` is the longest (what is heard)."""

    stretches: tuple[tuple[float, float], ...]

    @property
    def main(self) -> tuple[float, float] | None:
        return max(self.stretches, key=lambda s: s[1] - s[0]) if self.stretches else None

    def note(self, heard: float) -> str | None:
        """What a person should know of this clip for a model that hears `heard` seconds, or None."""
        main = self.main
        if main is None:
            return None
        said = []
        if main[1] - main[0] > heard + TAIL:
            said.append(f"{main[1] - main[0]:.1f} s of speech, longer than the {heard:g} s the model hears: it heard "
                        "the middle of it")
        others = [s for s in self.stretches if s != main]
        if others:
            where = ", ".join(f"{start:.1f}-{end:.1f} s" for start, end in others[:3])
            said.append(f"it heard the longest stretch of speech ({main[0]:.1f}-{main[1]:.1f} s), not the others "
                        f"({where})")
        return "; ".join(said) or None


_LOCK = threading.Lock()  # the detector keeps a state across a clip's chunks: one clip at a time
_MODEL = None


def _detector():
    global _MODEL
    if _MODEL is None:
        import torch

        threads = torch.get_num_threads()
        try:
            from silero_vad import load_silero_vad  # importing it sets torch's threads to 1: put them back
        except ImportError:
            raise ImportError("preprocessing.speech needs silero-vad and onnxruntime: pip install "
                              "'ensayo-ml[audio]'") from None
        finally:
            torch.set_num_threads(threads)
        _MODEL = load_silero_vad(onnx=True)
    return _MODEL


def find_speech(samples: np.ndarray, rate: int, config: SpeechConfig) -> Speech:
    """The clip's stretches of speech (`samples` mono at `rate`)."""
    import torch

    detector = _detector()
    from silero_vad import get_speech_timestamps

    heard_rate = rate if rate in RATES else 16000
    if heard_rate != rate:
        import scipy.signal

        ratio = Fraction(heard_rate, rate)
        samples = scipy.signal.resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)
    samples = levelled(samples, heard_rate)
    with _LOCK:
        found = get_speech_timestamps(torch.from_numpy(samples), detector,
                                      threshold=config.threshold, sampling_rate=heard_rate,
                                      min_speech_duration_ms=int(config.min_speech * 1000),
                                      min_silence_duration_ms=int(config.min_silence * 1000), speech_pad_ms=0)
    return Speech(tuple((stretch["start"] / heard_rate, stretch["end"] / heard_rate) for stretch in found))


def levelled(samples: np.ndarray, rate: int) -> np.ndarray:
    """The clip with its loudest frame at LEVEL_DB (float32, clipped to [-1, 1])."""
    frame = max(1, round(FRAME_SECONDS * rate))
    frames = len(samples) // frame
    power = np.square(samples[: frames * frame].reshape(frames, frame)).mean(axis=1) if frames else \
        np.square(samples).mean(keepdims=True)
    loudest = float(np.sqrt(power.max())) if power.size else 0.0
    gain = min(10 ** (LEVEL_DB / 20) / loudest, 10 ** (MAX_GAIN_DB / 20)) if loudest > 0 else 1.0
    return np.clip(samples * gain, -1.0, 1.0).astype(np.float32)


def spoken_part(samples: np.ndarray, rate: int, speech: Speech, config: SpeechConfig) -> np.ndarray:
    """The samples of the clip's main stretch of speech, with `padding` either side."""
    main = speech.main
    if main is None:
        return samples
    start = max(0, round((main[0] - config.padding) * rate))
    return samples[start: round((main[1] + config.padding) * rate)]

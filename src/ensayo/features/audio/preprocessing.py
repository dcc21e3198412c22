"""Audio preprocessing: the schema, reading any rate and channel count, trimming silence, levelling and
fixing the length (the spectrograms, which need torch, are `spectrogram`'s)."""

from __future__ import annotations

import functools
import os
import wave
from fractions import Fraction
from typing import Literal

import numpy as np
import soundfile as sf
from pydantic import Field, model_validator

from ensayo.features.audio.augment import WaveAugmentConfig, WaveAugmenter
from ensayo.features.audio.speech import Speech, SpeechConfig, find_speech, spoken_part
from ensayo.recipe import Strict


class AugmentConfig(WaveAugmentConfig):
    """Training-time only: SpecAugment masks and a random shift in time on the spectrogram, and the waveform
    augmentations (speed, pitch, reverb, shelf, gain, noise; none unless named), which need `in_memory: false`:
    the clips are decoded, and changed, anew each epoch."""

    time_masks: int = Field(2, ge=0)
    time_mask_width: int = Field(8, ge=0, description="frames, at most")
    freq_masks: int = Field(2, ge=0)
    freq_mask_width: int = Field(5, ge=0, description="bins, at most")
    time_shift: float = Field(0.1, ge=0, description="seconds, at most, either way")


class AudioPreprocessing(Strict):
    root: str | None = Field(None, description="folder that relative paths start from (default: the data file's)")
    sample_rate: int = Field(8000, gt=0)
    duration: float = Field(1.0, gt=0, description="seconds; clips are centred and padded or cropped to it")
    speech: SpeechConfig | None = Field(None, description="find the speech first (a voice activity detector) and "
                                        "hear only its longest stretch; a clip without speech is refused")
    trim_db: float | None = Field(30.0, gt=0, description="trim edges quieter than the loudest frame by this")
    loudness: Literal["rms", "peak", "none"] = "rms"
    target_db: float = Field(-20.0, le=0, description="level that `loudness` brings every clip to, in dBFS")
    representation: Literal["log_mel", "mfcc"] = "log_mel"
    n_fft: int = Field(256, gt=0)
    hop_length: int = Field(80, gt=0)
    n_mels: int = Field(40, gt=0)
    n_mfcc: int = Field(20, gt=0)
    f_min: float = Field(20.0, ge=0)
    f_max: float | None = Field(None, gt=0)
    top_db: float = Field(80.0, gt=0, description="floor of the log spectrogram below its peak")
    augment: AugmentConfig | None = Field(default_factory=AugmentConfig)
    in_memory: bool = Field(True, description="false: keep the paths, and read and encode each batch's clips "
                                              "as it is trained on (DataLoader workers), for sets larger than "
                                              "memory")
    normalize: Literal["dataset", "utterance"] = Field("dataset", description="each frequency bin standardized "
                                                                             "by the training clips' statistics, "
                                                                             "or by each clip's own")

    @model_validator(mode="after")
    def _augment_on_the_fly(self) -> AudioPreprocessing:
        if self.augment is not None and self.augment.active and self.in_memory:
            named = [name for name in WaveAugmentConfig.model_fields if getattr(self.augment, name) is not None]
            raise ValueError(f"augment.{named[0]}: waveform augmentation changes each clip as it is read, every "
                             "epoch; set in_memory: false")
        return self

    # an input whose values are file paths (ensayo.data.FileInput)
    def file_problems(self, paths: list[str]) -> dict[int, str]:
        problems = {index: reason for index, path in enumerate(paths) if (reason := audio_problem(path))}
        if self.speech is not None:
            problems |= {index: "no speech: the voice detector heard none in this recording" for index, path
                         in enumerate(paths) if index not in problems and not self.speech_of(path).stretches}
        return problems

    def file_notes(self, paths: list[str]) -> dict[int, str]:
        """What a person should know of how each clip was heard: more speech than the model hears, say."""
        if self.speech is None:
            return {}
        return {index: note for index, path in enumerate(paths)
                if (note := self.speech_of(path).note(self.duration)) is not None}

    def speech_of(self, path: str) -> Speech:
        """The clip's stretches of speech, found once per file (and per change of it)."""
        assert self.speech is not None
        status = os.stat(path)
        return _speech(path, status.st_mtime_ns, status.st_size, self.sample_rate, self.speech)

    def keeps_bad_files(self) -> bool:
        return False


# ------------------------------------------------------------------------------------------ reading
def read_audio(path: str, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at `sample_rate`, whatever the file's rate and channels."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != sample_rate:
        import scipy.signal  # 2 s of import (scipy): only for a clip at another rate

        ratio = Fraction(sample_rate, rate)
        mono = scipy.signal.resample_poly(mono, ratio.numerator, ratio.denominator).astype(np.float32)
    return mono


def audio_problem(path: str) -> str | None:
    """Why a file cannot be used as a clip, or None when it can."""
    try:
        info = sf.info(path)
        samples, _ = sf.read(path, dtype="float32", always_2d=True)
    except FileNotFoundError:
        return "file not found"
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        return f"not readable as audio ({exc})".replace(f"'{path}'", "").replace("  ", " ")
    if len(samples) == 0:
        return "empty: no samples"
    declared = _declared_wav_frames(path) if info.format == "WAV" else None
    if declared is not None and declared > info.frames:
        return f"truncated: the header declares {declared} samples, the file holds {info.frames}"
    if not np.isfinite(samples).all():
        return "holds NaN or infinite samples"
    return None


@functools.lru_cache(maxsize=4096)
def _speech(path: str, modified: int, size: int, sample_rate: int, config: SpeechConfig) -> Speech:
    return find_speech(read_audio(path, sample_rate), sample_rate, config)


def _declared_wav_frames(path: str) -> int | None:
    """The sample count a PCM WAV header promises (libsndfile reads a cut file without complaint)."""
    try:
        with wave.open(path, "rb") as handle:
            return handle.getnframes()
    except (wave.Error, EOFError, OSError):
        return None


def trim_silence(samples: np.ndarray, top_db: float, frame: int) -> np.ndarray:
    """Drop leading and trailing frames quieter than the loudest frame by more than `top_db`."""
    count = len(samples) // frame
    if count < 2:
        return samples
    power = np.square(samples[: count * frame].reshape(count, frame)).mean(axis=1)
    level = 10 * np.log10(np.maximum(power, 1e-12))
    loud = np.flatnonzero(level > level.max() - top_db)
    return samples[loud[0] * frame: (loud[-1] + 1) * frame]


def level(samples: np.ndarray, mode: str, target_db: float) -> np.ndarray:
    """Bring a clip to `target_db` dBFS by its RMS or its peak; clipping is avoided."""
    if mode == "none":
        return samples
    measure = np.sqrt(np.mean(np.square(samples))) if mode == "rms" else np.abs(samples).max()
    if measure <= 1e-8:
        return samples
    gain = 10 ** (target_db / 20) / measure
    peak = np.abs(samples).max() * gain
    return (samples * (gain / max(peak, 1.0))).astype(np.float32)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Centre a clip in `length` samples: zeros on both sides, or its middle kept."""
    if len(samples) >= length:
        start = (len(samples) - length) // 2
        return samples[start: start + length]
    before = (length - len(samples)) // 2
    return np.pad(samples, (before, length - len(samples) - before))


def prepare_clip(path: str, options: AudioPreprocessing, augmenter: WaveAugmenter | None = None,
                 seed: list[int] | None = None) -> np.ndarray:
    """A clip read, trimmed, levelled and cut to length; a training clip is also augmented (by `seed`'s draws)."""
    samples = read_audio(path, options.sample_rate)
    if options.speech is not None:
        samples = spoken_part(samples, options.sample_rate, options.speech_of(path), options.speech)
    if options.trim_db is not None:
        samples = trim_silence(samples, options.trim_db, options.hop_length)
    if augmenter is not None:
        samples = augmenter.speaker(samples, seed or [0])
    samples = level(samples, options.loudness, options.target_db)
    samples = fit_length(samples, round(options.duration * options.sample_rate))
    return samples if augmenter is None else augmenter.surroundings(samples, seed or [0])

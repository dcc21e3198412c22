"""The audio feature type: preprocessing (reading, trimming, levelling, spectrograms), the feature, its
encoders (CNN, RNN, CNN + RNN) and its section of the data report."""

from ensayo.features.audio.encoders import (
    AudioRnnConfig,
    AudioRnnEncoder,
    Augment,
    Cnn2dConfig,
    Cnn2dEncoder,
    CnnRnnConfig,
    CnnRnnEncoder,
)
from ensayo.features.audio.feature import AudioFeature
from ensayo.features.audio.preprocessing import (
    AudioPreprocessing,
    AugmentConfig,
    Spectrogram,
    audio_problem,
    fit_length,
    level,
    mel_filterbank,
    prepare_clip,
    read_audio,
    trim_silence,
)

__all__ = ["AudioFeature", "AudioPreprocessing", "AudioRnnConfig", "AudioRnnEncoder", "Augment", "AugmentConfig",
           "Cnn2dConfig", "Cnn2dEncoder", "CnnRnnConfig", "CnnRnnEncoder", "Spectrogram", "audio_problem",
           "fit_length", "level", "mel_filterbank", "prepare_clip", "read_audio", "trim_silence"]

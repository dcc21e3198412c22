"""The audio feature type: preprocessing (reading, trimming, levelling: `preprocessing`; spectrograms:
`spectrogram`), the feature, its encoders (CNN, RNN, CNN + RNN), their recipe schemas (`schema`) and its section
of the data report. The schemas are declared on import; what needs torch loads on first use."""

from ensayo.features.audio.preprocessing import (
    AudioPreprocessing,
    AugmentConfig,
    audio_problem,
    fit_length,
    level,
    prepare_clip,
    read_audio,
    trim_silence,
)
from ensayo.features.audio.schema import AudioRnnConfig, Cnn2dConfig, CnnRnnConfig
from ensayo.lazy import exports

_ENCODERS = "ensayo.features.audio.encoders"
_EXPORTS = {"AudioRnnEncoder": _ENCODERS, "Augment": _ENCODERS, "Cnn2dEncoder": _ENCODERS, "CnnRnnEncoder": _ENCODERS,
            "AudioFeature": "ensayo.features.audio.feature", "Spectrogram": "ensayo.features.audio.spectrogram",
            "mel_filterbank": "ensayo.features.audio.spectrogram"}
__getattr__ = exports(__name__, _EXPORTS)

__all__ = ["AudioFeature", "AudioPreprocessing", "AudioRnnConfig", "AudioRnnEncoder", "Augment", "AugmentConfig",
           "Cnn2dConfig", "Cnn2dEncoder", "CnnRnnConfig", "CnnRnnEncoder", "Spectrogram", "audio_problem",
           "fit_length", "level", "mel_filterbank", "prepare_clip", "read_audio", "trim_silence"]

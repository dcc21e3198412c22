"""The `language_model` model type: a text output learned by a next-token network (LSTM, GRU or
Transformer, `networks`), trained by the same trainer as the classifiers (checkpoints, resume, early
stopping), scored in bits per character on validation and test (`scoring`), and sampled from (`model`).
Its recipe schema (`schema`) is declared on import; what needs torch loads on first use."""

from ensayo.lazy import exports
from ensayo.models.language.schema import ARCHITECTURES, LanguageModelConfig, LanguageModelSchema

_NETWORKS = "ensayo.models.language.networks"
__getattr__ = exports(__name__, {"LANGUAGE_MODELS": _NETWORKS, "register_language_model": _NETWORKS,
                                 "LanguageModel": "ensayo.models.language.model"})

__all__ = ["ARCHITECTURES", "LANGUAGE_MODELS", "LanguageModel", "LanguageModelConfig", "LanguageModelSchema",
           "register_language_model"]

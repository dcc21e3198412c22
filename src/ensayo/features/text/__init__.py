"""The text feature type: preprocessing (normalization, tokens, vocabularies, word vectors), the feature
itself, its encoders (bag, CNN, RNN), their recipe schemas (`schema`) and its section of the data report.
The schemas are declared on import; the feature and its encoders, which need torch, load on first use."""

from ensayo.features.text.preprocessing import (
    PAD,
    UNK,
    EmbeddingsConfig,
    TextPipeline,
    TextPreprocessing,
    Vocabulary,
    WordVectorTraining,
    fit_word_vectors,
    load_word_vectors,
    normalize,
    repair_markup,
    strip_accents,
    subwords,
)
from ensayo.features.text.schema import BagEncoderConfig, CnnEncoderConfig, RnnEncoderConfig
from ensayo.lazy import exports

_EXPORTS = {"BagEncoder": "ensayo.features.text.encoders", "CnnEncoder": "ensayo.features.text.encoders",
            "RnnEncoder": "ensayo.features.text.encoders", "TokenEmbedding": "ensayo.features.text.encoders",
            "EncodedText": "ensayo.features.text.feature", "TextFeature": "ensayo.features.text.feature",
            "explore_texts": "ensayo.features.text.explore"}
__getattr__ = exports(__name__, _EXPORTS)

__all__ = ["PAD", "UNK", "BagEncoder", "BagEncoderConfig", "CnnEncoder", "CnnEncoderConfig", "EmbeddingsConfig",
           "EncodedText", "RnnEncoder", "RnnEncoderConfig", "TextFeature", "TextPipeline", "TextPreprocessing",
           "TokenEmbedding", "Vocabulary", "WordVectorTraining", "explore_texts", "fit_word_vectors",
           "load_word_vectors", "normalize", "repair_markup", "strip_accents", "subwords"]

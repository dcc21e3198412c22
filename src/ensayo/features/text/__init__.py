"""The text feature type: preprocessing (normalization, tokens, vocabularies, word vectors), the feature
itself, its encoders (bag, CNN, RNN) and its section of the data report."""

from ensayo.features.text.encoders import (
    BagEncoder,
    BagEncoderConfig,
    CnnEncoder,
    CnnEncoderConfig,
    RnnEncoder,
    RnnEncoderConfig,
    TokenEmbedding,
)
from ensayo.features.text.explore import explore_texts
from ensayo.features.text.feature import EncodedText, TextFeature
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

__all__ = ["PAD", "UNK", "BagEncoder", "BagEncoderConfig", "CnnEncoder", "CnnEncoderConfig", "EmbeddingsConfig",
           "EncodedText", "RnnEncoder", "RnnEncoderConfig", "TextFeature", "TextPipeline", "TextPreprocessing",
           "TokenEmbedding", "Vocabulary", "WordVectorTraining", "explore_texts", "fit_word_vectors",
           "load_word_vectors", "normalize", "repair_markup", "strip_accents", "subwords"]

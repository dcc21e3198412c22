"""What a recipe may say of the `tfidf_linear` model type, without scikit-learn (`ensayo.models.schemas`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ensayo.models.schemas import ClassifierSchema, Sections, declare_model_type
from ensayo.recipe import Strict


class LinearConfig(Strict):
    """Sparse baseline: bag of words or TF-IDF over word and character n-grams + a linear classifier."""

    weighting: Literal["tfidf", "count", "binary"] = "tfidf"
    word_ngrams: tuple[int, int] | None = (1, 2)
    char_ngrams: tuple[int, int] | None = (2, 5)
    min_df: int = Field(1, ge=1)
    max_features: int | None = None
    classifier: Literal["linear_svm", "logistic_regression", "sgd"] = "linear_svm"
    C: float = Field(1.0, gt=0)
    sentence_weight: float = Field(1.0, gt=0, description=(
        "scale of each sentence input's (unit-length) vector beside the n-gram blocks (each of unit length)"))


@declare_model_type("tfidf_linear")
class LinearSchema(ClassifierSchema):
    sections: ClassVar[Sections] = {"linear": LinearConfig}
    input_types = frozenset({"text", "sentence"})
    weighs_classes = True

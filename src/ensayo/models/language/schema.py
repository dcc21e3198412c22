"""What a recipe may say of the `language_model` model type, and what it checks there, without network code
(`ensayo.models.schemas`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from ensayo.models.schemas import GeneratorSchema, Sections, declare_model_type
from ensayo.recipe import Recipe, Strict
from ensayo.recipe.load import choice_error

# the names `model.language_model.architecture` takes: the built-in networks', and any `register_language_model`
# adds (`networks.py`)
ARCHITECTURES: list[str] = ["lstm", "gru", "transformer"]


class LanguageModelConfig(Strict):
    """A next-token model: a stacked LSTM / GRU or a decoder-only Transformer (pre-norm, causal attention)."""

    architecture: str = Field("lstm", description="a registered language model: lstm, gru, transformer")
    dim: int = Field(256, gt=0, description="embedding (and Transformer) width")
    hidden_size: int = Field(512, gt=0, description="recurrent state width")
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    positions: Literal["learned", "rotary"] = "learned"
    dropout: float = Field(0.1, ge=0, lt=1)
    tie_weights: bool = True
    ngrams: list[int] = Field(default_factory=list, description=(
        "hashed n-gram input embeddings: for each order n listed (2-6), the n tokens ending at a position "
        "are hashed into `ngram_buckets` rows of their own table and added to that position's embedding"))
    ngram_buckets: int = Field(65536, ge=16, description="rows of each hashed n-gram table")
    ngram_dropout: float = Field(0.0, ge=0, lt=1, description=(
        "in training, each order's n-gram embedding is dropped at this share of positions, so that the model "
        "learns to fall back on shorter n-grams and its own context instead of memorising long ones"))

    @field_validator("ngrams")
    @classmethod
    def _orders(cls, value: list[int]) -> list[int]:
        if any(not 2 <= n <= 6 for n in value) or len(set(value)) != len(value):
            raise ValueError("n-gram orders are distinct integers from 2 to 6")
        return sorted(value)


@declare_model_type("language_model")
class LanguageModelSchema(GeneratorSchema):
    sections: ClassVar[Sections] = {"language_model": LanguageModelConfig}

    @classmethod
    def check(cls, recipe: Recipe) -> list[str]:
        problems = super().check(recipe)
        architecture = recipe.model.language_model.architecture
        if architecture not in ARCHITECTURES:
            problems.append(choice_error("model.language_model.architecture", "architecture", architecture,
                                         ARCHITECTURES).strip())
        return problems

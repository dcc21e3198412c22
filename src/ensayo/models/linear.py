"""The `tfidf_linear` model type: bag of words or TF-IDF over word and character n-grams, with a
scikit-learn linear classifier. Saved as JSON vocabularies and safetensors arrays, never pickled.

Text inputs give sparse n-gram blocks; sentence inputs give their pretrained vector as a dense block
(scaled by `sentence_weight`) beside them, so that one linear classifier reads both the words and
what a multilingual encoder knows about them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ensayo import layout
from ensayo import metrics as ev
from ensayo.data import Splits
from ensayo.features import Feature
from ensayo.features.sentence import SentenceFeature
from ensayo.features.text import TextFeature
from ensayo.models.base import Classifier, FitContext, Fitted, read_state, register_model_type
from ensayo.models.explanation import InputExplanation, RowExplanation
from ensayo.models.linear_schema import LinearConfig, LinearSchema
from ensayo.models.neural import save_state
from ensayo.models.neural_inputs import make_features
from ensayo.outputs.category import CategoryOutput
from ensayo.progress import working
from ensayo.recipe import Recipe
from ensayo.store import atomic_path

if TYPE_CHECKING:  # scikit-learn and scipy are imported where a model is built (3 s; see models.base.available_if)
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer


def _vectorizer(config: LinearConfig, analyzer: str, ngrams: tuple[int, int]) -> TfidfVectorizer:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer=analyzer,
        tokenizer=str.split if analyzer == "word" else None,
        token_pattern=None,
        lowercase=False,
        ngram_range=tuple(ngrams),
        min_df=config.min_df,
        max_features=config.max_features,
        use_idf=config.weighting == "tfidf",
        sublinear_tf=config.weighting == "tfidf",
        binary=config.weighting == "binary",
        dtype=np.float32,
    )


def _classifier(config: LinearConfig, seed: int, class_weight: str | None) -> Any:
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.svm import LinearSVC

    if config.classifier == "linear_svm":
        return LinearSVC(C=config.C, random_state=seed, class_weight=class_weight)
    if config.classifier == "logistic_regression":
        return LogisticRegression(C=config.C, max_iter=300, random_state=seed, class_weight=class_weight)
    return SGDClassifier(loss="modified_huber", alpha=1e-5 / config.C, random_state=seed, max_iter=30, tol=1e-4,
                         class_weight=class_weight)


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


class LinearTextModel:
    """One word and one character vectorizer per text input and the vector of each sentence input,
    stacked, then a linear classifier."""

    def __init__(self, features: list[Feature], config: LinearConfig, seed: int = 42,
                 class_weight: str | None = None) -> None:
        self.features = features
        self.config = config
        self.seed = seed
        self.class_weight = class_weight  # "balanced": scikit-learn weighs each class by its inverse frequency
        self.vectorizers: list[tuple[TextFeature, str, TfidfVectorizer]] = []
        self.sentences = [f for f in features if isinstance(f, SentenceFeature)]
        self.coef: np.ndarray | None = None
        self.intercept: np.ndarray | None = None
        self.fit_seconds, self.n_features = 0.0, 0
        for feature in features:
            if not isinstance(feature, TextFeature):
                continue
            if config.word_ngrams:
                self.vectorizers.append((feature, "word", _vectorizer(config, "word", config.word_ngrams)))
            if config.char_ngrams:
                self.vectorizers.append((feature, "char", _vectorizer(config, "char_wb", config.char_ngrams)))
        if not self.vectorizers and not self.sentences:
            raise ValueError("model.linear needs word_ngrams or char_ngrams")

    def _documents(self, feature: TextFeature, kind: str, table: pl.DataFrame) -> list[str]:
        values = table[feature.column].to_list()
        if kind == "word":
            return [" ".join(words) for words in feature.pipeline.many_words(values)]
        return feature.pipeline.many_normalized(values)

    def _matrix(self, table: pl.DataFrame, fit: bool) -> sp.csr_matrix:
        import scipy.sparse as sp

        blocks = []
        for feature, kind, vectorizer in self.vectorizers:
            documents = self._documents(feature, kind, table)
            blocks.append(vectorizer.fit_transform(documents) if fit else vectorizer.transform(documents))
        for feature in self.sentences:
            vectors = feature.vectors([str(v) for v in table[feature.column].to_list()])
            blocks.append(sp.csr_matrix(vectors * np.float32(self.config.sentence_weight)))
        return sp.hstack(blocks, format="csr")

    def fit(self, table: pl.DataFrame, labels: np.ndarray) -> np.ndarray:
        """Fit vectorizers and classifier; returns the training rows' probabilities, which come for free here
        (scoring them later would vectorize the training set a second time)."""
        started = time.perf_counter()
        matrix = self._matrix(table, fit=True)
        classifier = _classifier(self.config, self.seed, self.class_weight).fit(matrix, labels)
        coef = np.asarray(classifier.coef_, dtype=np.float32)
        intercept = np.asarray(classifier.intercept_, dtype=np.float32)
        if coef.shape[0] == 1:  # binary problems come back as one row
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        self.coef, self.intercept = coef, intercept
        self.fit_seconds, self.n_features = time.perf_counter() - started, matrix.shape[1]
        return _softmax(self._scores(matrix))

    def _scores(self, matrix: sp.csr_matrix) -> np.ndarray:
        assert self.coef is not None and self.intercept is not None, "fit or load the model first"
        return np.asarray(matrix @ self.coef.T) + self.intercept

    def decision(self, table: pl.DataFrame) -> np.ndarray:
        return self._scores(self._matrix(table, fit=False))

    def predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        """Softmax of the decision scores (a calibrated probability for logistic regression only)."""
        return _softmax(self.decision(table))

    # ----------------------------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        return {
            "vectorizers": [
                {"feature": f.name, "kind": kind,
                 "vocabulary": sorted(v.vocabulary_, key=v.vocabulary_.__getitem__)}
                for f, kind, v in self.vectorizers
            ]
        }

    def save(self, run_dir: Path) -> None:
        arrays = {"coef": self.coef, "intercept": self.intercept}
        for index, (_, _, vectorizer) in enumerate(self.vectorizers):
            if vectorizer.use_idf:
                arrays[f"idf.{index}"] = vectorizer.idf_.astype(np.float32)
        # safetensors writes raw buffers in C order; scikit-learn's coef_ is often Fortran-ordered
        with atomic_path(run_dir / layout.LINEAR_WEIGHTS) as temporary:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(temporary))

    def load(self, run_dir: Path, state: dict[str, Any]) -> None:
        path = run_dir / layout.LINEAR_WEIGHTS
        try:
            arrays = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{path}: damaged or missing, not readable as safetensors ({exc})") from None
        self.coef, self.intercept = arrays["coef"], arrays["intercept"]
        for index, ((_, _, vectorizer), saved) in enumerate(zip(self.vectorizers, state["vectorizers"], strict=True)):
            vectorizer.vocabulary_ = {token: i for i, token in enumerate(saved["vocabulary"])}
            vectorizer.fixed_vocabulary_ = True
            if vectorizer.use_idf:
                vectorizer.idf_ = arrays[f"idf.{index}"].astype(np.float64)


@register_model_type("tfidf_linear")
class TfidfLinear(LinearSchema, Classifier):
    """Text inputs as n-grams and sentence inputs as their vectors, one linear classifier; fitted in one go."""

    refusals: ClassVar[dict[str, str]] = {
        "onnx": "a scikit-learn linear model over n-gram vocabularies is not a network; export it to mlflow"}
    distributed = "a scikit-learn linear classifier fits in one process"

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.features = make_features(recipe)
        balanced = "balanced" if recipe.train.class_weights == "balanced" else None
        self.linear = LinearTextModel(self.features, recipe.model.linear, recipe.train.seed, balanced)

    def fit(self, splits: Splits, context: FitContext) -> Fitted:
        self.classes.fit(self.labels(splits.train))
        derived = splits.bins.state() if splits.bins else {}
        train_true = self.classes.transform(self.labels(splits.train))
        with working(context.console, "fitting the vectorizers and the linear classifier"):
            train_probabilities = self.linear.fit(splits.train, train_true)
        context.console.print(f"  {self.linear.n_features:,} sparse features, fit in {self.linear.fit_seconds:.1f} s")
        self.linear.save(context.run_dir)
        save_state(context.run_dir, self.features, self.classes, {"linear": self.linear.state(), "derived": derived})
        metrics = {"fit_seconds": self.linear.fit_seconds, "train/loss": ev.log_loss(train_probabilities, train_true)}
        metrics |= self.score_splits(splits, lambda _, table: self.linear.predict_proba(table))
        return Fitted(metrics)

    @classmethod
    def load(cls, run_dir: Path, recipe: Recipe) -> TfidfLinear:
        model = cls(recipe)
        state = read_state(run_dir)
        for feature in model.features:
            feature.load_state(state["inputs"][feature.name])
        model.classes = CategoryOutput.from_state(state["output"])
        model.linear.load(run_dir, state["linear"])
        return model

    def _predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        return self.linear.predict_proba(table)

    def explain(self, table: pl.DataFrame, label: str | None = None) -> list[RowExplanation]:
        """Each row's n-grams by their part in the score of `label` (default: the predicted class): tf-idf value
        times the class's weight, which is exact for a linear model (no gradients needed)."""
        return [self._explain_row(table[i: i + 1], label) for i in range(table.height)]

    def _explain_row(self, row: pl.DataFrame, label: str | None, top: int = 15) -> RowExplanation:
        linear = self.linear
        assert linear.coef is not None
        matrix = linear._matrix(row, fit=False).tocsr()
        probabilities = self.predict_proba(row)[0]
        predicted = int(probabilities.argmax())
        target = predicted if label is None else self.classes.index[label]
        names = self._ngram_names()
        contributions = [(names[j], float(v * linear.coef[target, j]))
                         for j, v in zip(matrix.indices, matrix.data, strict=True)]
        contributions.sort(key=lambda item: -abs(item[1]))
        tokens = [(name, weight, 0.0) for name, weight in contributions[:top]]
        total = float(sum(weight for _, weight in contributions))
        return RowExplanation(self.classes.classes[predicted], float(probabilities[target]),
                              [InputExplanation("n-grams", "tokens", total, tokens=tokens)],
                              explained=self.classes.classes[target] if target != predicted else "")

    def _ngram_names(self) -> list[str]:
        names: list[str] = []
        for feature, kind, vectorizer in self.linear.vectorizers:
            vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
            names += [f"{feature.name}: {'word' if kind == 'word' else 'chars'} {token!r}" for token in vocabulary]
        for feature in self.linear.sentences:
            names += [f"{feature.name}: vector[{i}]" for i in range(feature.dim)]
        return names

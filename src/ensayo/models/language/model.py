"""The `language_model` model type's class: a text output learned by a next-token network (`networks`), trained by
the same trainer as the classifiers, scored in bits per character (`scoring`), and sampled from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ensayo import layout
from ensayo.data import Splits
from ensayo.models.base import FitContext, Fitted, Generator, read_state, register_model_type
from ensayo.models.language.networks import build_language_model
from ensayo.models.language.schema import LanguageModelSchema
from ensayo.models.language.scoring import language_metrics, picker
from ensayo.models.neural import count_parameters
from ensayo.outputs.text import Spelling, Tokenizer, TokenWindows, documents
from ensayo.recipe import Recipe
from ensayo.store import write_json, write_text
from ensayo.training import Trainer, distributed, load_weights, pick_device, save_weights


@register_model_type("language_model")
class LanguageModel(LanguageModelSchema, Generator):
    refusals: ClassVar[dict[str, str]] = {
        "onnx": "generation samples one token at a time with the network's own state; export it to mlflow",
        "explain": "it writes text, a token at a time, rather than answering a row with a class"}
    distributed = None
    SAMPLE_PROMPTS = ("The ", "Stocks ")

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.tokenizer: Tokenizer | None = None
        self.network: nn.Module | None = None

    def fit(self, splits: Splits, context: FitContext) -> Fitted:
        recipe, output, console = self.recipe, self.recipe.output, context.console
        texts = {name: documents(table, output) for name, table in splits.items()}
        main = distributed.world().main
        if not main:  # a distributed run: rank 0's tokenizer
            tokenizer = Tokenizer.from_state(distributed.broadcast_object(None))
        elif context.resume and (context.run_dir / layout.STATE).is_file():
            tokenizer = Tokenizer.from_state(distributed.broadcast_object(read_state(context.run_dir)["output"]))
        else:
            tokenizer = Tokenizer.fit(texts["train"], output)
            write_json(context.run_dir / layout.STATE, {"inputs": {}, "output": tokenizer.state()})
            distributed.broadcast_object(tokenizer.state())
        spelling = Spelling(tokenizer.rare_words(texts["train"]))
        windows = {}
        for name, split_texts in texts.items():
            stream, characters = tokenizer.stream(split_texts)
            spelling_bits = spelling.bits(tokenizer.unknown_words(split_texts))
            windows[name] = TokenWindows(stream, output.context, characters, spelling_bits)
        console.print(f"  {output.level} vocabulary {len(tokenizer):,}; training stream "
                      f"{len(windows['train'].stream):,} tokens in {len(windows['train']):,} windows")
        device = pick_device(recipe.train.device)
        network = build_language_model(recipe, len(tokenizer))
        sizes = count_parameters(network)
        console.print(f"model: {recipe.model.language_model.architecture}, {sizes['total']:,} parameters on {device}")
        trainer = Trainer(network, recipe.train, context.run_dir, device, console)
        if context.resume and trainer.load_checkpoint():
            console.print(f"resuming after epoch {trainer.state.epoch}, step {trainer.state.step_in_epoch}")
        size = recipe.train.eval_batch_size
        validation = windows["validation"]

        def evaluate(current: nn.Module) -> dict[str, float]:
            return language_metrics(current, validation, size, "val/")

        state = trainer.fit(windows["train"], evaluate if len(validation) else None, context.on_epoch)
        self.tokenizer, self.network = tokenizer, trainer.model
        if main:
            save_weights(trainer.model, context.run_dir / layout.WEIGHTS)
        metrics = {"fit_seconds": state.fit_seconds, "best_epoch": float(state.best_epoch),
                   "train/loss": state.history[-1]["train/loss"] if state.history else float("nan"),
                   "parameters": float(sizes["total"]), "vocabulary": float(len(tokenizer))}
        for name, prefix in (("validation", "val/"), ("test", "test/")):
            if len(windows[name]):
                metrics |= language_metrics(trainer.model, windows[name], size, prefix)
        return Fitted(metrics, state.history)

    @classmethod
    def load(cls, run_dir: Path, recipe: Recipe) -> LanguageModel:
        model = cls(recipe)
        model.tokenizer = Tokenizer.from_state(read_state(run_dir)["output"])
        weights = run_dir / layout.WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: the run has no trained weights (did training finish?)")
        network = build_language_model(recipe, len(model.tokenizer))
        load_weights(network, weights)
        model.network = network.eval()
        return model

    def generate(self, prompt: str, length: int, temperature: float, top_k: int | None, top_p: float | None,
                 seed: int) -> Iterator[str]:
        assert self.tokenizer is not None and self.network is not None, "fit or load the model first"
        text = prompt.lower() if self.recipe.output.lowercase else prompt
        ids = self.tokenizer.encode(text) if text else [1]  # no prompt: start as after a document's end
        generator = torch.Generator().manual_seed(seed)
        pick = picker(temperature, top_k, top_p, generator)
        previous = ids[-1] if text else None
        self.network.eval()
        # `sample` turns gradients off for each step it runs; a `with no_grad()` held across these yields would
        # leak: a stream left unfinished is closed later by whichever thread collects it, which then loses its
        # gradients for good (the server's streams and the test suite's training met that way)
        for token in self.network.sample(ids, length, pick):  # type: ignore[operator]
            yield self.tokenizer.decode_token(token, previous)
            previous = token

    def write_report(self, run_dir: Path) -> None:
        """A few samples, seeded, from the best weights as saved (what `ensayo generate` would write)."""
        trained = self.load(run_dir, self.recipe)
        samples = []
        for seed, prompt in enumerate(self.SAMPLE_PROMPTS):
            text = "".join(trained.generate(prompt, 300 if self.recipe.output.level == "char" else 60, 0.8, None,
                                            None, seed))
            samples.append(f"--- prompt {prompt!r}, temperature 0.8, seed {seed}\n{prompt}{text}\n")
        write_text(run_dir / layout.SAMPLES, "\n".join(samples))

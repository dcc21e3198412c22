"""Text encoders: bag of embeddings, CNN and recurrent, over word (and subword) embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ensayo.features.networks import Dropout, Encoder
from ensayo.features.text.feature import TextFeature
from ensayo.features.text.schema import BagEncoderConfig, CnnEncoderConfig, RnnEncoderConfig


class TokenEmbedding(nn.Module):
    """Word embeddings, plus fastText-style subword embeddings averaged in when the feature has them."""

    def __init__(self, feature: TextFeature, dim: int, freeze: bool) -> None:
        super().__init__()
        vectors = feature.init_tensors()
        if vectors and vectors["vectors"].shape[1] != dim:
            raise ValueError(f"input {feature.name!r}: embedding_dim is {dim} but the word vectors "
                             f"({feature.options.embeddings.path or 'trained'}) have "
                             f"{vectors['vectors'].shape[1]} dimensions")
        self.words = nn.Embedding(len(feature.vocab), dim, padding_idx=0, sparse=True)
        # PyTorch's N(0, 1) start makes every token a large random vector that Adam needs thousands of
        # steps to move; a small start (as Keras and fastText use) lets the few examples of a rare class count.
        nn.init.uniform_(self.words.weight, -0.05, 0.05)
        with torch.no_grad():
            self.words.weight[0].zero_()
        if vectors:
            with torch.no_grad():
                found = vectors["found"]
                self.words.weight[found] = vectors["vectors"][found]
        self.words.weight.requires_grad_(not freeze)
        self.subwords = None
        self._vocabulary_subwords = feature.vocabulary_subwords  # each word's subword ids, for `_composed_table`
        self._composed: tuple[tuple[int, ...], torch.Tensor] | None = None
        self._by_layers = False
        if feature.subword_vocab is not None:
            self.subwords = nn.EmbeddingBag(len(feature.subword_vocab), dim, mode="sum", padding_idx=0,
                                            sparse=True)
            nn.init.uniform_(self.subwords.weight, -0.05, 0.05)
            with torch.no_grad():
                self.subwords.weight[0].zero_()
        self.dim = dim

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = batch["ids"]
        if self.subwords is not None and self._answering():
            embedded = nn.functional.embedding(ids, self._composed_table())
        else:
            embedded = self._embedded(batch)
        positions = torch.arange(ids.shape[1], device=ids.device)
        mask = positions.unsqueeze(0) < batch["lengths"].unsqueeze(1)
        return embedded, mask

    def _answering(self) -> bool:
        """Evaluating, predicting or exporting (which traces in eval mode): a word's subwords are its id's, so its
        vector is a row of one table. Training, and attributing (`layer_by_layer`), run the words' and subwords'
        own layers."""
        return not self.training and not self._by_layers

    @contextmanager
    def layer_by_layer(self) -> Iterator[None]:
        """Run the words' and subwords' layers even when evaluating: attributions hook them."""
        self._by_layers = True
        try:
            yield
        finally:
            self._by_layers = False

    def train(self, mode: bool = True) -> TokenEmbedding:
        if mode:  # the weights are about to change (an optimizer may write them through .data)
            self._composed = None
        return super().train(mode)

    def _composed_table(self) -> torch.Tensor:
        """Every vocabulary word's vector as the bags make it, (its row + its subwords' rows) / (1 + their
        count): one lookup per token instead of a bag per token (the bags were half of ONNX Runtime's time
        for the demo model). Kept until the weights change, move or are loaded (their versions and storage)."""
        assert self.subwords is not None
        words, subwords = self.words.weight, self.subwords.weight
        key = (words._version, subwords._version, words.data_ptr(), subwords.data_ptr())
        if self._composed is None or self._composed[0] != key:
            flat, starts, counts = (torch.from_numpy(a).to(words.device) for a in self._vocabulary_subwords())
            with torch.no_grad():
                summed = nn.functional.embedding_bag(flat, subwords, starts, mode="sum", padding_idx=0)
                table = (words + summed) / (1.0 + counts.to(words.dtype)).unsqueeze(-1)
            self._composed = (key, table)
        return self._composed[1]

    def _embedded(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["ids"]
        embedded = self.words(ids)
        if self.subwords is not None:
            if self.training and self.subwords.weight.requires_grad:
                summed = self._learnt_bag_sums(batch["sub_ids"], batch["sub_offsets"]).view_as(embedded)
            else:
                summed = self.subwords(batch["sub_ids"], batch["sub_offsets"]).view_as(embedded)
            counts = batch["sub_counts"].view(ids.shape).unsqueeze(-1).to(embedded.dtype)
            embedded = (embedded + summed) / (1.0 + counts)
        return embedded

    def _learnt_bag_sums(self, sub_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The subword bags' sums, as `self.subwords` gives them, from each subword's row looked up once: a batch
        uses four in ten of its subwords twice or more, and the table's sparse gradient then has one row per
        subword instead of one per use, which its optimizer would first have to sum (the sums are the same)."""
        assert self.subwords is not None
        used, places = torch.unique(sub_ids, return_inverse=True)
        # no padding_idx: subword ids start at 1 (`TextFeature._indexed`), and torch's sparse backward would copy
        # every row of the gradient to drop the padding's (2 ms a step of 512 titles)
        rows = nn.functional.embedding(used, self.subwords.weight, sparse=True)
        return nn.functional.embedding_bag(places, rows, offsets, mode="sum")


@TextFeature.register_encoder("bag")
class BagEncoder(Encoder):
    """Mean (and optionally max) of the token embeddings: fastText's architecture."""

    Config = BagEncoderConfig

    def __init__(self, feature: TextFeature, config: BagEncoderConfig) -> None:
        super().__init__()
        self.embed = TokenEmbedding(feature, config.embedding_dim, config.freeze_embeddings)
        self.pooling = config.pooling
        self.dropout = Dropout(config.dropout)
        self.output_dim = config.embedding_dim * (2 if config.pooling == "mean_max" else 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embedded, mask = self.embed(batch)
        weights = mask.unsqueeze(-1).to(embedded.dtype)
        pooled = (embedded * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        if self.pooling == "mean_max":
            pooled = torch.cat([pooled, embedded.masked_fill(~mask.unsqueeze(-1), -1e4).amax(1)], dim=-1)
        return self.dropout(pooled)


def _windows(embedded: torch.Tensor, width: int) -> torch.Tensor:
    """`embedded.unfold(1, width, 1).flatten(2)` from slices, which ONNX has: (batch, positions, dim * width)."""
    positions = embedded.shape[1] - width + 1
    return torch.stack([embedded[:, i: i + positions] for i in range(width)], dim=-1).flatten(2)


class _TrainingWindows(torch.autograd.Function):
    """`embedded.unfold(1, width, 1).flatten(2)` written once, straight in the dtype the product runs in, and a
    backward that adds each shift's gradient into the embeddings' rows. unfold, flatten and autocast's cast make
    two copies forward and, backward, a cast and torch's `unfold_backward`: 1.7 ms each per width and demo batch.
    The same values and, summed in the embeddings' dtype, the same gradients."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, embedded: torch.Tensor, width: int,
                dtype: torch.dtype) -> torch.Tensor:
        batch, length, dim = embedded.shape
        positions = length - width + 1
        windows = embedded.new_empty(batch, positions, dim, width, dtype=dtype)
        for shift in range(width):
            windows[..., shift].copy_(embedded[:, shift: shift + positions])
        ctx.width, ctx.embedded_dtype = width, embedded.dtype  # type: ignore[attr-defined]
        return windows.view(batch, positions, dim * width)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        width: int = ctx.width  # type: ignore[attr-defined]
        batch, positions, flat = grad.shape
        per_shift = grad.view(batch, positions, flat // width, width)
        embedded_grad = grad.new_empty(batch, positions + width - 1, flat // width,
                                       dtype=ctx.embedded_dtype)  # type: ignore[attr-defined]
        # unfold_backward's order, the windows that start first first, onto zeros: the last shift is copied (0 + x
        # is x) and only the rows it leaves are zeroed, where a zeroed tensor and an add cost a pass and a cast more
        last = width - 1
        embedded_grad[:, :last].zero_()
        embedded_grad[:, last:].copy_(per_shift[..., last])
        for shift in reversed(range(last)):
            embedded_grad[:, shift: shift + positions].add_(per_shift[..., shift])
        return embedded_grad, None, None


class _ReluOfLargest(torch.autograd.Function):
    """relu(largest valid window) per filter, as `relu((activations * valid).amax(1))` gives it, with a backward
    that makes no (batch, windows, filters) tensor of int64 or bool-to-float copy: torch's amax backward counts the
    ties as int64 and multiplies by a bool mask (3-4 ms per width and demo batch, against 2). The same gradient:
    a filter whose largest is positive sends it to the windows holding that value, split between ties (an invalid
    window, zeroed, never holds a positive largest); one at zero sends nothing."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, activations: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        masked = _valid_only(activations, valid)
        largest = masked.amax(1)
        ctx.save_for_backward(masked, largest)
        return torch.relu(largest)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        masked, largest = ctx.saved_tensors  # type: ignore[attr-defined]
        holds = _same_bits(masked, largest.unsqueeze(1))  # exact for the positive largest, the only ones that count
        ties = holds.view(torch.uint8).sum(1, dtype=torch.uint8 if holds.shape[1] < 256 else torch.int32)
        share = torch.where(largest > 0, grad / ties, 0)
        return share.unsqueeze(1) * holds.view(torch.uint8), None


def _same_bits(values: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """values == others, compared as integers of their width: torch compares 16-bit floats element by element
    through float32 (twice the time). Equal floats are equal bits except 0 and -0, and NaN."""
    integer = {2: torch.int16, 4: torch.int32, 8: torch.int64}[values.element_size()]
    return values.view(integer) == others.view(integer)


@TextFeature.register_encoder("cnn")
class CnnEncoder(Encoder):
    """Parallel 1-D convolutions of several widths over the embeddings, max-pooled over time."""

    Config = CnnEncoderConfig

    def __init__(self, feature: TextFeature, config: CnnEncoderConfig) -> None:
        super().__init__()
        self.embed = TokenEmbedding(feature, config.embedding_dim, config.freeze_embeddings)
        # Each convolution is one matrix product over unfolded windows: on a CPU this is several times
        # faster than mkldnn's Conv1d for short texts, forward and backward.
        self.convs = nn.ModuleList(
            nn.Linear(config.embedding_dim * width, config.filters_count) for width in config.filter_widths
        )
        self.widths = list(config.filter_widths)
        self.dropout = Dropout(config.dropout)
        self.output_dim = config.filters_count * len(config.filter_widths)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embedded, _ = self.embed(batch)
        lengths = batch["lengths"]
        exporting = torch.onnx.is_in_onnx_export()
        # ONNX has no unfold, and a traced graph keeps no Python `if` on a length: exporting, every text gets
        # the widest filter's padding (the windows it adds are masked below, so the answers do not change)
        shortfall = max(self.widths) - 1 if exporting else max(self.widths) - embedded.shape[1]
        if shortfall > 0:
            embedded = nn.functional.pad(embedded, (0, 0, 0, shortfall))
        embedded = self.dropout(embedded)
        learning = torch.is_grad_enabled() and not exporting
        pooled = []
        for width, conv in zip(self.widths, self.convs, strict=True):
            if exporting:
                windows = _windows(embedded, width)
            elif learning:
                windows = _TrainingWindows.apply(embedded, width, _product_dtype(embedded))
            else:
                windows = embedded.unfold(1, width, 1).flatten(2)
            activations = conv(windows)
            positions = torch.arange(activations.shape[1], device=activations.device)
            # a window is valid if it starts inside the text (or is the first one of a short text)
            valid = positions.unsqueeze(0) <= (lengths - width).clamp_min(0).unsqueeze(1)
            # the ReLU after the pooling, on one value per filter: max(0, the valid windows' largest), as before
            # (the invalid windows' zeros are at most that), without a ReLU over every window and its gradient
            pooled.append(_ReluOfLargest.apply(activations, valid) if learning
                          else torch.relu(_valid_only(activations, valid).amax(1)))
        return self.dropout(torch.cat(pooled, dim=-1))


def _valid_only(activations: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The invalid windows zeroed by a product: one pass each way, where masked_fill copies and then fills (0.7x its
    time, forward and backward), and ONNX Runtime runs it faster than a Where."""
    return activations * valid.unsqueeze(-1).to(activations.dtype)


def _product_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype a linear layer multiplies `tensor` in: autocast's where it is on for the tensor's device."""
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensor.dtype


@TextFeature.register_encoder("rnn")
class RnnEncoder(Encoder):
    """A (bidirectional) LSTM or GRU over the embeddings, pooled over time."""

    Config = RnnEncoderConfig

    def __init__(self, feature: TextFeature, config: RnnEncoderConfig) -> None:
        super().__init__()
        self.embed = TokenEmbedding(feature, config.embedding_dim, config.freeze_embeddings)
        cell = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = cell(config.embedding_dim, config.hidden_size, num_layers=config.layers, batch_first=True,
                        bidirectional=config.bidirectional, dropout=config.dropout if config.layers > 1 else 0.0)
        self.pooling = config.pooling
        self.dropout = Dropout(config.dropout)
        self.output_dim = config.hidden_size * (2 if config.bidirectional else 1)
        if config.pooling == "last":
            self.onnx_problem = ("pools the last state of packed sequences, which ONNX export cannot trace "
                                 "(pooling: mean or max exports)")

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embedded, mask = self.embed(batch)
        packed = pack_padded_sequence(self.dropout(embedded), batch["lengths"].cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, state = self.rnn(packed)
        if self.pooling == "last":
            hidden = state[0] if isinstance(state, tuple) else state
            directions = 2 if self.rnn.bidirectional else 1
            return self.dropout(torch.cat(list(hidden[-directions:]), dim=-1))
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=mask.shape[1])
        if self.pooling == "max":
            pooled = outputs.masked_fill(~mask.unsqueeze(-1), -1e4).amax(1)
        else:
            weights = mask.unsqueeze(-1).to(outputs.dtype)
            pooled = (outputs * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.dropout(pooled)



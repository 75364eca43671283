"""The `Encoder` base class every family subclasses.

Shapes: B items, K selected layers, T tokens, D width, N inputs.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, NoReturn, Optional, Sequence

import numpy as np
import torch
from torch import nn

from zoo.checkpointing import ActivationCheckpointing
from zoo.config import EncoderConfig
from zoo.errors import ConfigError, naming_input
from zoo.io import folder_files, is_folder_input
from zoo.numerics import cast_input, non_finite_features
from zoo.outputs import EncoderOutput
from zoo.pooling import (LayerSpec, check_batch_sizes, check_pool, is_single_layer, layer_indices, pool_tokens,
                         select_layers)
from zoo.processing import (
    DatasetRows, Processor, column_as_dataset, first_non_finite, is_dataset, is_file_object, is_iterable_dataset,
    iterable_dataset_rows, require_items,
)
from zoo.progress import progress_bar
from zoo.saving import Checkpointable

if TYPE_CHECKING:
    from tqdm import tqdm

#: raw inputs (or pieces of them: a long recording's windows) prepared at once before they are
#: sorted by size into batches
PREPARE_GROUP = 64
#: pieces per forward pass in `embed` unless the caller says
EMBED_BATCH_SIZE = 8
#: guards the count of threads inside encoders' `embedding` blocks (`Encoder.embedding`)
EMBEDDING_LOCK = threading.Lock()


class Encoder(ActivationCheckpointing, Checkpointable, nn.Module):
    """A self-supervised encoder: raw inputs in, token features and embeddings out.

    Subclasses set `family`, `modality`, `config_class`, `processor_class` and implement
    `forward(**batch, output_hidden_states=False) -> EncoderOutput`.
    """

    family: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    config_class: ClassVar[type[EncoderConfig]] = EncoderConfig
    processor_class: ClassVar[type[Processor]] = Processor
    #: pool names `embed` takes; "cls" only where a token of the encoder's own comes first
    pools: ClassVar[tuple[str, ...]] = ("mean", "none")
    #: prefixes of parameters `forward` never uses (a pretraining head, a mask embedding, a
    #: tokenizer's quantizer): a head on the encoder leaves them out of what it trains
    unused_in_forward: ClassVar[tuple[str, ...]] = ()
    #: floating inputs kept in float32 when the weights are half precision (a waveform the
    #: encoder turns into log-mel features itself, in float32)
    full_precision_inputs: ClassVar[tuple[str, ...]] = ()
    #: tokens in front of each item's content ones (a ViT's cls token): `embed`'s mean leaves them
    #: out (GMML's mean of patches), still summed batch by batch, and a token head gives them no class
    leading_tokens: ClassVar[int] = 0
    #: `embed`'s default batch size, which the command line uses where no --batch-size is given
    embed_batch_size: ClassVar[int] = EMBED_BATCH_SIZE

    def __init__(self, config: EncoderConfig, processor: Optional[Processor] = None) -> None:
        super().__init__()
        self.config = config
        self.processor = processor if processor is not None else self.processor_class(
            **self.default_processor_settings(config))
        self._embedders, self._modes_outside = 0, None  # `embedding`'s count and the modes it gives back

    @classmethod
    def default_processor_settings(cls, config: EncoderConfig) -> dict[str, Any]:
        """Processor settings a config implies (e.g. MERT's sample_rate), used where a
        checkpoint ships no preprocessor_config.json."""
        return {}

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def layer_widths(self) -> list[int]:
        """Width of each of the L + 1 hidden states (graph encoders differ: their layer 0 is the
        input features)."""
        return [self.embed_dim] * (self.num_layers + 1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Move a batch to the encoder's device; floating inputs also take its dtype, but for
        those in `full_precision_inputs`."""
        return {
            key: cast_input(value, self.dtype, key).to(self.device)
            if value.is_floating_point() and key not in self.full_precision_inputs else value.to(self.device)
            for key, value in batch.items()
        }

    def pool_tokens(self, tokens: torch.Tensor, mask: torch.Tensor, pool: str) -> torch.Tensor:
        """(..., T, D) tokens of `forward` and their mask -> (..., D) rows, pooled as `embed` pools
        them: a head trains on the feature it later predicts from."""
        return pool_tokens(tokens, mask, pool)

    @property
    def preprocess(self) -> Processor:
        """Raw inputs -> the keyword arguments of `forward` (one batch, no chunking): the processor
        itself, so that `collate_fn=encoder.preprocess` pickles into a DataLoader's spawn workers
        without the model (HuBERT's, MERT's and BEATs' weight-norm convolutions do not pickle)."""
        return self.processor

    def forward(self, output_hidden_states: bool = False, **batch: torch.Tensor) -> EncoderOutput:
        """The processor's tensors of one batch -> `EncoderOutput`, which each family writes:
        `last_hidden_state` (B, T, D) over the tokens, `mask` (B, T) of the valid ones, `pooled`
        (B, D), and with `output_hidden_states` every layer's (layer 0: the input embeddings).
        Padding may not change an item's tokens: a part that would mix them (a GroupNorm over
        the padded length) runs per item, so an item's output is the same in any batch."""
        raise NotImplementedError

    def as_item_list(self, inputs: Any) -> Sequence[Any]:
        """Split `inputs` into items; a single item (path, array, dict) becomes a list of one, a
        folder the files under it (`with_folders_opened`), and a `datasets` Dataset (or its column
        `dataset[NAME]`) the rows of its column of the processor's `dataset_feature`, read as they
        are reached (`DatasetRows`)."""
        if isinstance(inputs, (list, tuple)):
            return self.with_folders_opened(inputs)
        column_source = column_as_dataset(inputs, self.processor.dataset_feature)
        if column_source is not None:
            return DatasetRows(column_source, self.processor.dataset_feature)
        if is_dataset(inputs) and self.processor.dataset_feature:
            return DatasetRows(inputs, self.processor.dataset_feature)
        if is_iterable_dataset(inputs) and self.processor.dataset_feature:
            return iterable_dataset_rows(inputs, self.processor.dataset_feature)
        if isinstance(inputs, (str, bytes, bytearray, Path, dict, np.ndarray, torch.Tensor)) or is_file_object(
                inputs) or not isinstance(inputs, Iterable):
            return self.with_folders_opened([inputs])
        return self.with_folders_opened(list(inputs))

    def with_folders_opened(self, items: Sequence[Any]) -> list[Any]:
        """`items` with each folder among them replaced by the files under it that the processor
        reads, sorted (`io.folder_files`), as `zoo embed` reads a folder, so that one call does
        in Python what one command does; a processor whose file holds many items (a table's rows)
        reads its files one by one, and one without file endings (graphs) reads no files."""
        processor = self.processor
        if processor.file_holds != "item" or not processor.file_suffixes:
            return list(items)
        opened = []
        for item in items:
            opened.extend(map(str, folder_files(item, processor.file_suffixes, processor.processor_type))
                          if is_folder_input(item) else [item])
        return opened

    @torch.no_grad()
    def embed(
        self,
        inputs: Any,
        layer: LayerSpec = None,
        pool: str = "mean",
        batch_size: Optional[int] = EMBED_BATCH_SIZE,
        device: Optional[str | torch.device] = None,
        progress: bool | tqdm = True,
        **prepare_kwargs: Any,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Embed raw inputs: one row per item, whatever the batching.

        Items are prepared in groups, cut into pieces (long recordings into windows),
        sorted by size so that batches need little padding, and run in eval mode; only
        valid tokens reach the pooling, so padding never changes a row.

        Args:
            inputs: raw items (paths, arrays, graphs, rows...) or a single item; a folder stands
                for the files under it that the encoder reads, sorted (image and audio encoders).
            layer: None (last layer), an int (0 = input embeddings, negative from the end),
                a list (or 1-d integer array) of ints, or "all".
            pool: "mean" over valid tokens, "cls" (the encoder's own leading token, where it has
                one: `pools`) or "none" (all tokens).
            batch_size: pieces per forward pass (None: the encoder's `embed_batch_size`).
            device: where to run; defaults to where the encoder is.
            progress: show a tqdm bar over items, or advance this open tqdm bar (a job's).
            **prepare_kwargs: passed to the processor (e.g. `sampling_rate=44100`).

        Returns:
            (N, D) for one layer, (N, K, D) for several; with pool="none" a list of N
            tensors (T_i, D) or (K, T_i, D) (a table encoder, whose rows all have the same
            tokens, gives one (N, T, D) tensor).
        """
        indices = self.check_embed_options(layer, pool)
        batch_size = self.embed_batch_size if batch_size is None else batch_size
        check_batch_sizes(batch_size=batch_size)
        self.processor.check_options(prepare_kwargs)
        items = self.as_item_list(inputs)
        require_items(items)
        with self.embedding(device):
            rows = self._embed_items(items, indices, pool, batch_size, progress, prepare_kwargs)
        if is_single_layer(layer):
            rows = [row[0] for row in rows]
        return rows if pool == "none" else torch.stack(rows)

    def predict(self, inputs: Any, **kwargs: Any) -> NoReturn:
        """Refuse: an encoder alone has no labels or values to give. Without this, nn.Module's
        `__getattr__` would answer with a bare AttributeError that names no way to get a head."""
        raise ConfigError(f"this {self.family} encoder has no head, so it has nothing to predict; put one on it "
                          "(zoo.for_classification(encoder, labels=[...]) or for_regression, then train it, as "
                          "`zoo finetune` does) or load a fine-tuned classifier/ folder; for features, use "
                          "encoder.embed(inputs)")

    def check_dtype(self, dtype: torch.dtype) -> None:
        """Raise a ConfigError where this encoder cannot run in `dtype`, so that loading or moving it
        there is refused at once rather than at its first use; every dtype is taken unless a family
        says otherwise."""

    @property
    def finetune_lr_scale(self) -> float:
        """The share of its head's lr at which this encoder is fine-tuned whole (`zoo finetune --mode
        full`, or a loop of one's own): 1 unless a family's output moves far more per step than its
        head's (T-JEPA's standardised output)."""
        return 1.0

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "Encoder":
        """nn.Module's casts and moves (`.to`, `.half()`, `.bfloat16()`, `.type()`), with `check_dtype`
        asked before any weight is cast: T-JEPA took `.to(torch.bfloat16)`, was refused only at its
        first use, when its weights were rounded for good, and a save in between wrote a folder that
        reloaded in float32 and embedded rows 6.6 off (at most 2.0 in size) without a word."""
        dtype = cast_dtype(fn)
        if dtype is not None:
            self.check_dtype(dtype)
        return super()._apply(fn, recurse)

    def check_embed_options(self, layer: LayerSpec, pool: str) -> Optional[list[int]]:
        """What `embed` checks of its layer and pool, also for a job to check before it writes
        anything; returns the hidden-state indices of `layer` (None: the last layer alone)."""
        check_pool(pool, self.pools, type(self).__name__)
        return layer_indices(layer, self.num_layers)

    @contextmanager
    def embedding(self, device: Optional[str | torch.device] = None) -> Iterator[None]:
        """Move to `device` (if given) and switch to eval mode for the block, then restore the
        caller's mode of every submodule: embeddings must not depend on dropout or on whether the
        caller was training, and a part the caller keeps in eval mode (frozen BatchNorm) stays so.

        Threads embedding with one encoder at once share the switch: the first in saves the modes,
        the last out gives them back. Each restoring its own put a training encoder back in train
        mode while others embedded (rows with dropout, 0.2 off) and lost the caller's mode."""
        if device is not None:
            from zoo.hub import model_to

            model_to(self, device, None)
        with EMBEDDING_LOCK:
            if not self._embedders:
                self._modes_outside = [(module, module.training) for module in self.modules()]
                self.eval()
            self._embedders += 1
        try:
            yield
        finally:
            with EMBEDDING_LOCK:
                self._embedders -= 1
                if not self._embedders:
                    for module, training in self._modes_outside:
                        module.training = training
                    self._modes_outside = None

    def progress_bar(self, total: Optional[int], progress: bool | tqdm, unit: str = "item") -> Any:
        """The tqdm bar `embed` shows over `total` units (None: not known ahead), a silent one
        without `progress`, or `progress` itself, left open, when it is a bar already: a job's
        over all its shards, which `embed` then advances a group at a time."""
        if not isinstance(progress, bool):
            if not callable(getattr(progress, "update", None)):  # progress="yes" was an AttributeError mid-embed
                raise ConfigError(f"progress={progress!r}; pass True, False or an open tqdm bar")
            return nullcontext(progress)
        return progress_bar(total=total, unit=unit, progress=progress, desc=f"embed {self.family}")

    def _embed_items(self, items, indices, pool, batch_size, progress, prepare_kwargs) -> list[torch.Tensor]:
        rows: list[torch.Tensor] = []
        with self.progress_bar(len(items), progress) as bar:
            for start, group in self.prepared_groups(items, **prepare_kwargs):
                rows.extend(self._embed_group(group, indices, pool, batch_size, bar))
                self.check_finite_rows(rows[start:], start)
                bar.update(len(group))
        return rows

    def check_finite_rows(self, rows: torch.Tensor | Sequence[torch.Tensor], start: int = 0) -> None:
        """Refuse, naming the input, a row (of a tensor, or a list of an item's rows each) holding NaN
        or an infinity (`numerics.non_finite_features` says why it came); `start` is the first row's
        input number."""
        if torch.is_tensor(rows):
            bad = first_non_finite(rows)
            index = None if bad is None else bad[0]
        else:
            index = next((i for i, row in enumerate(rows) if first_non_finite(row) is not None), None)
        if index is not None:
            with naming_input(start + index):
                raise non_finite_features(self)

    def prepared_groups(self, items: Sequence[Any], **prepare_kwargs: Any) -> Iterator[tuple[int, list[Any]]]:
        """`(start, prepared)`: the items prepared a group at a time, and the index of the group's
        first. A group ends at `PREPARE_GROUP` items or pieces: a folder of hour-long recordings
        holds a group's windows, not 64 whole recordings (an hour at 16 kHz is 230 MB)."""
        start, group, pieces = 0, [], 0
        for index, item in enumerate(items):
            with naming_input(index):
                group.append(self.processor.prepare_lazily(item, **prepare_kwargs))
            pieces += len(self.processor.split(group[-1]))
            if max(len(group), pieces) >= PREPARE_GROUP or index == len(items) - 1:
                yield start, group
                start, group, pieces = index + 1, [], 0

    def _embed_group(self, group, indices, pool, batch_size, bar) -> list[torch.Tensor]:
        """The rows of a prepared group; where its items were cut into windows (a long recording),
        the bar says how many of its windows are done, as its item count moves only at its end."""
        pieces = [(position, order, piece) for position, prepared in enumerate(group)
                  for order, piece in enumerate(self.processor.split(prepared))]  # (item in group, order, piece)
        pieces.sort(key=lambda entry: -self.processor.size(entry[2]))
        accumulators = [_Accumulator(pool, self.leading_tokens) for _ in group]
        for start in range(0, len(pieces), batch_size):
            if len(pieces) > len(group):
                bar.set_postfix_str(f"window {start + 1} of {len(pieces)}")
            chunk = pieces[start : start + batch_size]
            batch = self.processor.collate([piece for _, _, piece in chunk])
            batch = self.to_device(batch)
            output = self(**batch, output_hidden_states=indices is not None)
            features = select_layers(output, indices).float().cpu()
            mask = output.mask.cpu()
            for row, (position, order, _) in enumerate(chunk):
                accumulators[position].add(order, features[row][:, mask[row]])
        if len(pieces) > len(group):
            bar.set_postfix_str("")
        return [accumulator.result() for accumulator in accumulators]

    def card_usage(self, inputs: str) -> tuple[str, str]:
        """What the default model card (`zoo.cards.default_card`) calls this model, and its line of
        use on `inputs`; a family whose checkpoints do something else (a tokenizer) says so."""
        return "encoder", f"model.embed({inputs})  # (N, {self.embed_dim})"

    def config_dict_to_save(self) -> dict[str, Any]:
        """What `save_pretrained` writes to config.json: the encoder's config."""
        return self.config.to_dict()


#: the pools `_Accumulator` reduces as pieces come, each with how it joins two pieces' reductions
RUNNING_POOLS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": torch.add, "sum": torch.add, "max": torch.maximum}


class _Accumulator:
    """Collects the (K, T, D) valid tokens of an item's pieces, in any order, and pools them.

    Mean pooling and the graph readouts (sum, max) keep a running reduction, so that no item's
    tokens outlive their batch: neither a long recording's windows nor the nodes of thousands of
    graphs are held until the end. They leave out the first `skip` tokens of the item (items with
    a cls token come in one piece).
    """

    def __init__(self, pool: str, skip: int = 0) -> None:
        self.pool, self.skip = pool, skip
        self.parts: dict[int, torch.Tensor] = {}
        self.total: Optional[torch.Tensor] = None
        self.count = 0

    def add(self, order: int, tokens: torch.Tensor) -> None:
        if self.pool in RUNNING_POOLS:
            tokens = tokens[:, self.skip:] if order == 0 else tokens
            reduced = tokens.amax(dim=1) if self.pool == "max" else tokens.sum(dim=1)
            self.total = reduced if self.total is None else RUNNING_POOLS[self.pool](self.total, reduced)
            self.count += tokens.shape[1]
        elif self.pool == "cls" and order == 0:
            self.parts[0] = tokens[:, 0]
        elif self.pool == "none":
            self.parts[order] = tokens

    def result(self) -> torch.Tensor:
        if self.pool == "mean":
            return self.total / max(self.count, 1)
        if self.pool in RUNNING_POOLS:
            return self.total
        if self.pool == "cls":
            return self.parts[0]
        return torch.cat([self.parts[order] for order in sorted(self.parts)], dim=1)


def cast_dtype(fn: Callable[[torch.Tensor], torch.Tensor]) -> Optional[torch.dtype]:
    """The floating dtype nn.Module's `_apply` function `fn` casts float32 weights to, found on a
    one-number tensor (None where `fn` fails on it: the real call then says why)."""
    try:
        cast = fn(torch.zeros(1))
    except Exception:  # a device this machine lacks, for one: the move itself reports it
        return None
    return cast.dtype if isinstance(cast, torch.Tensor) and cast.is_floating_point() else None

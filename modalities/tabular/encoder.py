"""`TabularEncoder`: what tabular families share on top of `zoo.Encoder`.

Tokens are a row's features (after the family's extra tokens, such as T-JEPA's
regularization tokens); every row has the same tokens, so there is no padding. Tables
can be far larger than memory: `iter_embed` streams a table chunk by chunk and yields
each chunk's rows, and `embed` joins them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from modalities.tabular.processing import TableProcessor
from modalities.tabular.tables import CHUNK_ROWS, TABLE_BATCH_SIZE, iter_frames, row_count
from zoo.encoder import Encoder
from zoo.errors import InputError
from zoo.pooling import LayerSpec, check_batch_sizes, is_single_layer, pool_tokens, select_layers


def is_file_list(inputs: Any) -> bool:
    """Several table files, read one after another (as `zoo embed` passes them)."""
    return isinstance(inputs, (list, tuple)) and bool(inputs) and all(isinstance(item, (str, Path)) for item in inputs)


def table_rows(inputs: Any) -> Optional[int]:
    """Rows of one table or of a list of table files, if known before reading them (`row_count`)."""
    counts = [row_count(path) for path in inputs] if is_file_list(inputs) else [row_count(inputs)]
    return None if None in counts else sum(counts)


def iter_tables(inputs: Any, chunk_rows: int) -> Iterator[Any]:
    """Chunks of one table, or of several table files one after another."""
    for table in inputs if is_file_list(inputs) else [inputs]:
        yield from iter_frames(table, chunk_rows)


class TabularEncoder(Encoder):
    """Base class of tabular encoders: inputs are whole tables, outputs one row per table row."""

    modality = "tabular"
    processor_class = TableProcessor
    pools = ("mean", "cls", "none")  # "cls": the first extra token (T-JEPA's regularization token)
    embed_batch_size = TABLE_BATCH_SIZE

    @staticmethod
    def table_chunks(inputs: Any, chunk_rows: int = CHUNK_ROWS) -> Iterator[Any]:
        """The rows of `inputs` (a table, a list of table files, or a list, tuple or generator of rows)
        as DataFrames of `chunk_rows` rows."""
        return iter_tables(inputs, chunk_rows)

    @torch.no_grad()
    def iter_embed(
        self,
        table: Any,
        layer: LayerSpec = None,
        pool: str = "mean",
        batch_size: Optional[int] = TABLE_BATCH_SIZE,
        device: Optional[str | torch.device] = None,
        progress: bool = True,
        chunk_rows: int = CHUNK_ROWS,
        **prepare_kwargs: Any,
    ) -> Iterator[torch.Tensor]:
        """Embed a table chunk by chunk in bounded memory; yields each chunk's rows in order.

        Shapes as `embed`, with N the chunk's rows; `batch_size` None is `embed_batch_size`, and
        `prepare_kwargs` are refused by name (a table takes none), as other encoders refuse theirs.
        """
        indices, squeeze = self.check_embed_options(layer, pool), is_single_layer(layer)
        batch_size = self.embed_batch_size if batch_size is None else batch_size
        check_batch_sizes(batch_size=batch_size)
        self.processor.check_options(prepare_kwargs)
        start = 0
        with self.progress_bar(table_rows(table), progress, unit="row") as bar:
            for frame in self.table_chunks(table, chunk_rows):
                batch = self.processor.transform(frame)  # checks the columns of an empty chunk too
                if len(frame):  # a CSV of only a header line reads as one empty chunk
                    with self.embedding(device):  # a chunk at a time: not while the caller holds the generator
                        rows = self._embed_batch(batch, indices, pool, batch_size, squeeze)
                    self.check_finite_rows(rows, start)
                    yield rows
                bar.update(len(frame))
                start += len(frame)

    def _embed_batch(self, batch: dict[str, torch.Tensor], indices, pool: str, batch_size: int,
                     squeeze: bool) -> torch.Tensor:
        rows = next(iter(batch.values())).shape[0]
        parts = []
        for start in range(0, rows, batch_size):
            piece = self.to_device({key: value[start : start + batch_size] for key, value in batch.items()})
            output = self(**piece, output_hidden_states=indices is not None)
            features = select_layers(output, indices).float()
            if pool != "none":
                features = pool_tokens(features, output.mask.unsqueeze(1), pool)
            parts.append((features[:, 0] if squeeze else features).cpu())
        return torch.cat(parts)

    def embed(
        self,
        inputs: Any,
        layer: LayerSpec = None,
        pool: str = "mean",
        batch_size: Optional[int] = TABLE_BATCH_SIZE,
        device: Optional[str | torch.device] = None,
        progress: bool = True,
        chunk_rows: int = CHUNK_ROWS,
        **prepare_kwargs: Any,
    ) -> torch.Tensor:
        """Embed every row of a table: a DataFrame, Arrow table, CSV/Parquet path (or a list
        of them), a dict, a numpy structured array, or a list, tuple or generator of rows (row
        dicts, Series such as `frame.iloc[i]`, DataFrames), which embed as those rows in one
        DataFrame would. Columns are matched by name.

        Returns:
            (N, D) for one layer, (N, K, D) for several; with pool="none" (N, T, D) tokens,
            or (N, K, T, D). "mean" averages all tokens, "cls" takes the first extra token.
        """
        chunks = list(self.iter_embed(inputs, layer, pool, batch_size, device, progress, chunk_rows, **prepare_kwargs))
        if not chunks or sum(len(chunk) for chunk in chunks) == 0:
            raise InputError("embed() got a table with no rows; pass at least one row")
        return torch.cat(chunks)

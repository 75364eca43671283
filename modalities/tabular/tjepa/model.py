"""T-JEPA's row encoder (Thimonier et al., ICLR 2025): feature tokenizer + post-LN transformer.

Token order follows the official code: the regularization tokens first, then one token
per numeric column, then one per categorical column. A numeric value x of column j
becomes `w_j * x + b_j`; a category becomes its embedding plus the column's bias; a
regularization token is a learned vector (`w` times 1, no bias). A sinusoidal position
code (base 100, as upstream) is added to every token, and optionally a learned
feature-type embedding (numeric / categorical) to the feature tokens. The transformer
layers are torch's post-LN `TransformerEncoderLayer`; after them come dropout,
LayerNorm, a linear map, dropout and LayerNorm, as in the official `TabularEncoder`.

Shapes: B rows, T = num_reg_tokens + feature tokens, D = hidden_dim.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import torch
from torch import nn

from modalities.tabular.encoder import TabularEncoder
from modalities.tabular.processing import TableProcessor
from zoo.checkpointing import CheckpointedBlocks
from zoo.config import EncoderConfig
from zoo.errors import ConfigError, InputError
from zoo.outputs import EncoderOutput
from zoo.processing import first_non_finite

ACTIVATIONS = ("relu", "gelu")
#: base of the sinusoidal position code (the official PositionalEncoding uses log(100))
POSITION_BASE = 100.0
#: the share of its head's lr at which a standardised encoder is fine-tuned (`finetune_lr_scale`)
STANDARDIZED_FINETUNE_LR_SCALE = 1e-4


@dataclasses.dataclass
class TJEPAConfig(EncoderConfig):
    """T-JEPA encoder architecture.

    Args:
        num_numeric: numeric feature columns.
        cardinalities: embedding rows of each categorical column (vocabulary + unknown bucket).
        hidden_dim: token width.
        num_layers / num_heads / dim_feedforward: the transformer layers.
        dropout: dropout inside the layers and after them.
        num_reg_tokens: regularization tokens prepended to the features (the paper's
            [REG] tokens, `n_cls_tokens` in the official code).
        feature_type_embedding: add a learned numeric/categorical embedding to feature
            tokens (used only when the table has both kinds, as upstream).
        feature_types: the type (0 or 1) of each feature token; empty = 0 for numeric and
            1 for categorical tokens. (The official code assigns types in the table's column
            order while its tokens are numeric-first, so a converted official checkpoint
            with mixed column order sets these explicitly to reproduce it.)
        activation: of the feed-forward blocks.
        layer_norm_eps: of every LayerNorm.
        standardize_output: scale the last layer's tokens per position and channel to zero
            mean and unit variance over the pretraining rows (buffers `output_mean` and
            `output_std`, set by `with_output_scale`). T-JEPA's targets end in a LayerNorm
            and its tokens vary little from row to row around a per-position mean (std ~0.006
            for tjepa-adult), so without it every pooled row is nearly the same vector
            (cosine similarity 0.99999). Converted official checkpoints leave it off and give
            the official outputs.
    """

    family = "tjepa"

    num_numeric: int = 0
    cardinalities: tuple[int, ...] = ()
    hidden_dim: int = 64
    num_layers: int = 4
    num_heads: int = 2
    dim_feedforward: int = 256
    dropout: float = 0.0
    num_reg_tokens: int = 1
    feature_type_embedding: bool = False
    feature_types: tuple[int, ...] = ()
    activation: str = "relu"
    layer_norm_eps: float = 1e-5
    standardize_output: bool = False

    def __post_init__(self) -> None:
        self.cardinalities = tuple(int(size) for size in self.cardinalities)
        self.feature_types = tuple(int(kind) for kind in self.feature_types)
        if self.feature_types and (len(self.feature_types) != self.num_features or set(self.feature_types) - {0, 1}):
            raise ConfigError(f"feature_types={self.feature_types} must give 0 or 1 for each of the "
                              f"{self.num_features} feature tokens (or be empty)")
        if self.num_numeric + len(self.cardinalities) == 0:
            raise ConfigError("a T-JEPA encoder needs at least one feature column (num_numeric or cardinalities)")
        if any(size < 1 for size in self.cardinalities):
            raise ConfigError(f"cardinalities={self.cardinalities}: every categorical column needs >= 1 row")
        sizes = {"hidden_dim": self.hidden_dim, "num_layers": self.num_layers, "num_heads": self.num_heads,
                 "dim_feedforward": self.dim_feedforward}
        if any(size < 1 for size in sizes.values()):  # 0 trained an encoder of no layers, or divided by zero
            raise ConfigError(f"{sizes}: each must be at least 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout={self.dropout}; use a probability in [0, 1)")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(f"hidden_dim={self.hidden_dim} must be divisible by num_heads={self.num_heads}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation={self.activation!r} is not one of {ACTIVATIONS}")
        if self.num_reg_tokens < 0:
            raise ConfigError(f"num_reg_tokens={self.num_reg_tokens} must be >= 0")

    @property
    def embed_dim(self) -> int:
        return self.hidden_dim

    @property
    def num_features(self) -> int:
        return self.num_numeric + len(self.cardinalities)

    @property
    def num_tokens(self) -> int:
        return self.num_reg_tokens + self.num_features

    @classmethod
    def for_table(cls, processor: TableProcessor, **architecture) -> "TJEPAConfig":
        """The config whose inputs are the columns of a fitted processor."""
        return cls(num_numeric=len(processor.numeric_names), cardinalities=tuple(processor.cardinalities),
                   **architecture)


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    """(length, width) position code: sin on even channels, cos on odd ones, base 100."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(POSITION_BASE) / width))
    code = torch.zeros(length, width)
    code[:, 0::2] = torch.sin(position * frequency)
    code[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return code


def init_weights(module: nn.Module) -> None:
    """The official `init_weights("trunc_normal")`: linear maps and embeddings N(0, 0.02)
    truncated at +-2, zero biases, unit LayerNorms. The tokenizer's own vectors keep their
    Kaiming init and the attention input projections torch's Xavier init, as upstream."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class TokenTransformer(CheckpointedBlocks, nn.Module):
    """Post-LN transformer layers, then dropout, LayerNorm, linear, dropout, LayerNorm:
    the official `TabularEncoder`, used by both the encoder and the predictor."""

    def __init__(self, width: int, depth: int, heads: int, feedforward: int, dropout: float, activation: str,
                 eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, feedforward, dropout, activation=activation,
                                       layer_norm_eps=eps, batch_first=True)
            for _ in range(depth)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.fc = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, eps=eps)

    def forward(self, tokens: torch.Tensor, output_hidden_states: bool = False) -> list[torch.Tensor]:
        """[last output], or every hidden state: the input tokens first, and the last one
        after the final norm-linear-norm."""
        states = [tokens]
        hidden = tokens
        for index, layer in enumerate(self.layers):
            hidden = self.run_block(index, layer, hidden)
            states.append(hidden)
        states[-1] = self.norm2(self.dropout(self.fc(self.norm1(self.dropout(hidden)))))
        return states if output_hidden_states else states[-1:]


class FeatureTokenizer(nn.Module):
    """Numeric values, category indices and regularization tokens -> (B, T, D) tokens."""

    def __init__(self, config: TJEPAConfig) -> None:
        super().__init__()
        self.num_reg_tokens = config.num_reg_tokens
        self.weight = nn.Parameter(torch.empty(config.num_reg_tokens + config.num_numeric, config.hidden_dim))
        self.bias = nn.Parameter(torch.empty(config.num_features, config.hidden_dim))
        self.category_embeddings = nn.ModuleList(nn.Embedding(size, config.hidden_dim)
                                                 for size in config.cardinalities)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.bias, a=math.sqrt(5))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        ones = numeric.new_ones(numeric.shape[0], self.num_reg_tokens)
        tokens = self.weight * torch.cat([ones, numeric], dim=1).unsqueeze(-1)
        if self.category_embeddings:
            embedded = [embedding(categorical[:, i]) for i, embedding in enumerate(self.category_embeddings)]
            tokens = torch.cat([tokens, torch.stack(embedded, dim=1)], dim=1)
        bias = torch.cat([self.bias.new_zeros(self.num_reg_tokens, self.bias.shape[1]), self.bias])
        return tokens + bias


class TJEPAEncoder(TabularEncoder):
    """T-JEPA's encoder; `pooled` is the mean over all tokens of the last layer."""

    family = "tjepa"
    config_class = TJEPAConfig

    def __init__(self, config: TJEPAConfig, processor: Optional[TableProcessor] = None) -> None:
        super().__init__(config, processor)
        if not config.num_reg_tokens:
            self.pools = ("mean", "none")  # no regularization token: the first token is a feature
        self.check_processor()
        self.tokenizer = FeatureTokenizer(config)
        mixed = config.num_numeric > 0 and len(config.cardinalities) > 0
        self.feature_type_embedding = (nn.Embedding(2, config.hidden_dim)
                                       if config.feature_type_embedding and mixed else None)
        self.register_buffer("positions", sinusoidal_positions(config.num_tokens, config.hidden_dim),
                             persistent=False)
        types = config.feature_types or [0] * config.num_numeric + [1] * len(config.cardinalities)
        self.register_buffer("feature_types", torch.tensor(types), persistent=False)
        self.transformer = TokenTransformer(config.hidden_dim, config.num_layers, config.num_heads,
                                            config.dim_feedforward, config.dropout, config.activation,
                                            config.layer_norm_eps)
        if config.standardize_output:
            self.register_buffer("output_mean", torch.zeros(config.num_tokens, config.hidden_dim))
            self.register_buffer("output_std", torch.ones(config.num_tokens, config.hidden_dim))
        self.apply(init_weights)

    def fitted_to(self, table: Any) -> "TJEPAEncoder":
        """This encoder with its output scale fitted on the rows of `table`, as pretraining fits
        it on its rows at the end (`with_output_scale`); unchanged without `standardize_output`.
        A random-init encoder's scale is the identity, which leaves its pooled rows nearly one
        vector: a baseline trained on them (`zoo finetune --random-init`) needs this first."""
        return with_output_scale(self, table) if self.config.standardize_output else self

    @property
    def finetune_lr_scale(self) -> float:
        """`Encoder.finetune_lr_scale`, 1e-4 for a standardised output: it divides by stds near 0.006
        (some 0.0003), so an AdamW step that suits the head moves the output that much more: at a
        shared 1e-4 the head barely trained and the encoder shook, the loss rising from 1.43 to 7.49
        in 60 steps (2,000 Adult rows, a numeric target). With the head at 1e-2, encoders at 3e-5 to
        3e-4 of it scored alike (test RMSE 0.41-0.42), at 1e-3 of it worse (0.58). 1 without a
        standardised output."""
        return STANDARDIZED_FINETUNE_LR_SCALE if self.config.standardize_output else 1.0

    def check_processor(self) -> None:
        """A fitted processor must produce exactly the columns the weights expect."""
        if not self.processor.is_fitted:
            return
        numeric, cardinalities = len(self.processor.numeric_names), tuple(self.processor.cardinalities)
        if (numeric, cardinalities) != (self.config.num_numeric, self.config.cardinalities):
            raise ConfigError(
                f"the table processor gives {numeric} numeric columns and categories {cardinalities}, but the "
                f"encoder expects {self.config.num_numeric} and {self.config.cardinalities}; fit the processor on "
                "the table the encoder was built for"
            )

    def check_inputs(self, numeric: torch.Tensor, categorical: torch.Tensor) -> None:
        """What `forward` needs of the processor's tensors, named: a 1-d row, rows of unequal counts or
        float categories failed inside torch (an IndexError, a size mismatch, F.embedding's error)."""
        if numeric.dim() != 2 or categorical.dim() != 2 or len(numeric) != len(categorical):
            raise InputError(f"numeric {tuple(numeric.shape)} and categorical {tuple(categorical.shape)} must be "
                             "(rows, columns) with the same rows; encoder.preprocess(table) makes them")
        if categorical.is_floating_point() or categorical.is_complex() or categorical.dtype == torch.bool:
            raise InputError(f"categorical has dtype {categorical.dtype}; it holds category indices (integers), as "
                             "the table processor encodes them")
        if numeric.shape[1] != self.config.num_numeric or categorical.shape[1] != len(self.config.cardinalities):
            raise InputError(f"got {numeric.shape[1]} numeric and {categorical.shape[1]} categorical columns; this "
                             f"encoder takes {self.config.num_numeric} and {len(self.config.cardinalities)}")
        bad = first_non_finite(numeric)
        if bad is not None:
            row, column = bad
            names = self.processor.numeric_names if self.processor.is_fitted else []
            name = repr(names[column]) if column < len(names) else str(column)
            raise InputError(f"numeric inputs hold NaN or infinite values (row {row}, numeric column {name}); the "
                             "table processor fills missing values: encoder.preprocess(table)")
        sizes = categorical.new_tensor(self.config.cardinalities)
        if categorical.numel() and ((categorical < 0) | (categorical >= sizes)).any():
            raise InputError(f"a category index is outside [0, cardinality) for cardinalities "
                             f"{self.config.cardinalities}; encode categories with the encoder's table processor")

    def check_full_precision(self) -> None:
        """Refuse half-precision weights when the output is standardised: the last layer's tokens
        vary from row to row by about 1 % of their value (some channels by 0.03 %), below what
        bfloat16 (0.4 %) or float16 (0.05 %) resolve, and the scaling blows that rounding up
        (tjepa-adult's pooled rows, at most 2.5 in float32, were off by 9.0 in bfloat16); float64 is
        finer than float32, and was refused with the same words."""
        self.check_dtype(self.output_std.dtype)
        self.check_dtype(next(self.parameters()).dtype)

    def check_dtype(self, dtype: torch.dtype) -> None:
        """`check_full_precision`'s rule, also applied before the encoder is cast to `dtype` (`zoo.load(...,
        dtype=)`, `--dtype`, `.to`, `.half()`): it was taken there and refused at first use."""
        if self.config.standardize_output and dtype in (torch.float16, torch.bfloat16):
            raise ConfigError(f"this T-JEPA encoder cannot run with {dtype} weights: its standardised output is only "
                              "meaningful in float32 or float64 (half precision loses the row-to-row differences); "
                              "load it in float32: leave out dtype= (zoo load) or --dtype (the zoo commands); weights "
                              "already in half precision stay rounded after .float(), so load them again")

    def embed_tokens(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """(B, T, D) input tokens: tokenizer, position code and feature-type embedding."""
        self.check_inputs(numeric, categorical)
        tokens = self.tokenizer(numeric.to(self.tokenizer.weight.dtype), categorical.long()) + self.positions
        if self.feature_type_embedding is not None:
            types = self.feature_type_embedding(self.feature_types)
            tokens = tokens + torch.cat([types.new_zeros(self.config.num_reg_tokens, types.shape[1]), types])
        return tokens

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor,
                output_hidden_states: bool = False) -> EncoderOutput:
        """Rows as the processor's tensors: numeric (B, n_numeric) float, categorical (B, n_categorical) long.

        A standardised encoder runs in float32 only (autocast is switched off inside): see
        `check_full_precision`."""
        if self.config.standardize_output:
            self.check_full_precision()
            with torch.autocast(numeric.device.type, enabled=False):
                states = self.transformer(self.embed_tokens(numeric, categorical), output_hidden_states)
            states[-1] = (states[-1] - self.output_mean) / self.output_std
        else:
            states = self.transformer(self.embed_tokens(numeric, categorical), output_hidden_states)
        last = states[-1]
        return EncoderOutput(
            last_hidden_state=last,
            mask=torch.ones(last.shape[:2], dtype=torch.bool, device=last.device),
            pooled=last.mean(dim=1),
            hidden_states=tuple(states) if output_hidden_states else None,
        )


@torch.no_grad()
def with_output_scale(encoder: TJEPAEncoder, table: Any, chunk_rows: int = 65536) -> TJEPAEncoder:
    """A copy of `encoder` that standardises its last-layer tokens with the mean and standard
    deviation of each token channel over the rows of `table` (streamed in chunks)."""
    raw = TJEPAEncoder(dataclasses.replace(encoder.config, standardize_output=False), encoder.processor)
    raw.load_state_dict({k: v for k, v in encoder.state_dict().items() if not k.startswith("output_")})
    total, squares, rows = 0.0, 0.0, 0
    for tokens in raw.iter_embed(table, pool="none", progress=False, chunk_rows=chunk_rows):
        tokens = tokens.double()
        total, squares, rows = total + tokens.sum(dim=0), squares + tokens.square().sum(dim=0), rows + len(tokens)
    if rows < 2:
        raise InputError(f"the output scale needs at least 2 rows; the table has {rows}")
    mean = total / rows
    std = ((squares - rows * mean.square()) / (rows - 1)).clamp(min=0).sqrt()
    if (std <= 1e-7 * (1 + mean.abs())).all():
        raise InputError(f"the output scale needs rows that differ; the table's {rows} rows all give the same tokens "
                         "(are they one row repeated?), and scaling by their spread would blow every other row up "
                         "by about 1e12")
    scaled = TJEPAEncoder(dataclasses.replace(encoder.config, standardize_output=True), encoder.processor)
    scaled.load_state_dict({**raw.state_dict(), "output_mean": mean.float(),
                            "output_std": std.clamp(min=1e-12).float()})
    return scaled.to(next(encoder.parameters()).dtype)

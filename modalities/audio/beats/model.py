"""BEATs (Chen et al. 2022, https://arxiv.org/abs/2212.09058): audio patches -> transformer tokens.

A 16 kHz waveform becomes a 128-bin Kaldi log-mel fbank (25 ms windows, 10 ms hop), cut
into 16 x 16 patches (16 frames x 16 mel bins: 8 patches per 160 ms column), embedded by a
strided Conv2d, normalised and projected, then encoded by a post-LN DeepNorm transformer
with a gated relative position bias (modalities/audio/beats/attention.py).

The zoo computes each item's fbank and patch count from its own samples, so an item's
output is the same alone or in any padded batch; upstream's batch mask lets padding into
real patches (../shared/golden/beats/README.md).

An acoustic tokenizer is the same network plus a quantizer: when `codebook_size` > 0 the
encoder also carries `quantize_layer` and a cosine `codebook`, and `tokenize()` gives the
discrete labels BEATs is pretrained to predict.

Shapes: B items, S samples, F fbank frames, N patch tokens (8 per column), P patch width,
D width, K codebook size, C codebook width.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch
from torch import nn

from modalities.audio.beats.attention import ATTENTION_PATHS, EncoderLayer, PositionalConv, relative_buckets
from modalities.audio.beats.quantizer import CosineCodebook
from zoo.audio import AudioProcessor, batch_lengths, check_min_samples, embed_timed_frames
from zoo.checkpointing import CheckpointedBlocks
from zoo.config import EncoderConfig
from zoo.encoder import Encoder
from zoo.errors import ConfigError
from zoo.outputs import EncoderOutput
from zoo.pooling import LayerSpec, pool_tokens, refuse_fixed_options

#: the fbank normalisation of every release: (fbank - mean) / (2 * std)
FBANK_MEAN, FBANK_STD = 15.41663, 6.55582
MEL_BINS = 128
#: samples per fbank window and hop at 16 kHz (25 ms, 10 ms)
WINDOW, HOP = 400, 160


@dataclasses.dataclass
class BEATsConfig(EncoderConfig):
    """Architecture of a BEATs encoder (or tokenizer); names follow upstream's cfg.

    Args:
        input_patch_size: side of the square fbank patches (default: 16).
        embed_dim_patches: patch embedding width P, upstream's `embed_dim` (default: 512).
        conv_bias: whether the patch Conv2d has a bias (default: False).
        encoder_layers / encoder_embed_dim / encoder_ffn_embed_dim / encoder_attention_heads:
            transformer depth, width D, feed-forward width, heads (defaults: 12 / 768 / 3072 / 12).
        deep_norm: DeepNorm residual scaling (2L)^(1/4) (default: True).
        conv_pos / conv_pos_groups: kernel and groups of the positional conv (defaults: 128 / 16).
        relative_position_embedding: add the bucketed relative position bias (default: True).
        num_buckets / max_distance: its buckets and the distance of the last one (defaults: 320 / 800).
        gru_rel_pos: gate the bias per head and query (default: True).
        dropout / attention_dropout / activation_dropout / dropout_input / encoder_layerdrop:
            training-only regularisation (defaults: 0.1 / 0.1 / 0.0 / 0.0 / 0.05).
        attn_implementation: "sdpa" (fused) or "eager"; same numbers (default: "sdpa").
        codebook_size / codebook_dim: tokenizer quantizer K and C; 0 for a plain encoder
            (defaults: 0 / 0).
    """

    family = "beats"
    positive_fields = ("embed_dim_patches", "encoder_embed_dim", "encoder_ffn_embed_dim", "conv_pos", "conv_pos_groups",
                       "num_buckets", "max_distance")

    input_patch_size: int = 16
    embed_dim_patches: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    deep_norm: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    dropout_input: float = 0.0
    encoder_layerdrop: float = 0.05
    attn_implementation: str = "sdpa"
    codebook_size: int = 0
    codebook_dim: int = 0

    def __post_init__(self) -> None:
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ConfigError(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
                              f"encoder_attention_heads {self.encoder_attention_heads}")
        if self.encoder_embed_dim % self.conv_pos_groups:
            raise ConfigError(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
                              f"conv_pos_groups {self.conv_pos_groups}")
        if self.input_patch_size < 1 or MEL_BINS % self.input_patch_size:
            raise ConfigError(f"input_patch_size {self.input_patch_size} must divide the {MEL_BINS} mel bins")
        if self.attn_implementation not in ATTENTION_PATHS:
            raise ConfigError(f"attn_implementation={self.attn_implementation!r}; use one of {ATTENTION_PATHS}")
        if bool(self.codebook_size) != bool(self.codebook_dim):
            raise ConfigError(f"codebook_size {self.codebook_size} and codebook_dim {self.codebook_dim} must both "
                              "be set (a tokenizer) or both be 0 (an encoder)")

    @property
    def embed_dim(self) -> int:
        return self.encoder_embed_dim

    @property
    def num_layers(self) -> int:
        return self.encoder_layers

    @property
    def patches_per_column(self) -> int:
        """Patch tokens per time column (8 for 16-bin patches over 128 mel bins)."""
        return MEL_BINS // self.input_patch_size

    @property
    def min_samples(self) -> int:
        """Shortest waveform that makes one patch column: `input_patch_size` fbank frames."""
        return WINDOW + (self.input_patch_size - 1) * HOP


VARIANTS = {
    "tiny": dict(encoder_layers=4, encoder_embed_dim=192, encoder_ffn_embed_dim=768, encoder_attention_heads=3,
                 embed_dim_patches=256, conv_pos=64),
    "base": dict(),
}


def fbank(waveform: torch.Tensor) -> torch.Tensor:
    """(S,) 16 kHz waveform in [-1, 1] -> (F, 128) normalised log-mel fbank, in float32."""
    import torchaudio.compliance.kaldi

    features = torchaudio.compliance.kaldi.fbank(
        waveform.float().unsqueeze(0) * 2**15, num_mel_bins=MEL_BINS, sample_frequency=16000,
        frame_length=25, frame_shift=10,
    )
    return (features - FBANK_MEAN) / (2 * FBANK_STD)


class BEATsEncoder(Encoder):
    """BEATs audio encoder: 16 kHz waveform -> patch tokens, 8 per 160 ms.

    Tokens are time-major: token t * 8 + f is mel band block f (low to high) of column t.
    `pooled` is the mean of the valid tokens of the last layer; `frames()` averages each
    column's 8 tokens into a 6.25 Hz frame sequence.
    """

    family = "beats"
    modality = "audio"
    config_class = BEATsConfig
    processor_class = AudioProcessor
    unused_in_forward = ("quantize_layer.",)  # a tokenizer's: `tokenize` uses it, not `forward`
    #: the fbank is computed in float32: a waveform rounded to half precision first puts its
    #: rounding noise into the quiet mel bins (an FSDD digit 26 % off float32 in bfloat16, not 0.5 %)
    full_precision_inputs = ("input_values",)

    def __init__(self, config: BEATsConfig, processor: Optional[AudioProcessor] = None) -> None:
        if processor is None:
            processor = AudioProcessor(sampling_rate=16000, chunk_seconds=10.0, min_samples=config.min_samples)
        super().__init__(config, processor)
        if processor.sampling_rate != 16000:
            raise ConfigError(f"BEATs takes 16 kHz audio; the processor says {processor.sampling_rate} Hz")
        processor.align_to_frames(config.min_samples, config.input_patch_size * HOP)
        patch, width = config.input_patch_size, config.encoder_embed_dim
        self.patch_embedding = nn.Conv2d(1, config.embed_dim_patches, patch, stride=patch, bias=config.conv_bias)
        self.layer_norm = nn.LayerNorm(config.embed_dim_patches)
        self.post_extract_proj = (
            nn.Linear(config.embed_dim_patches, width) if config.embed_dim_patches != width else nn.Identity()
        )
        self.dropout_input = nn.Dropout(config.dropout_input)
        self.transformer = TransformerEncoder(config)
        if config.codebook_size:
            self.quantize_layer = nn.Sequential(
                nn.Linear(width, width), nn.Tanh(), nn.Linear(width, config.codebook_dim)
            )
            self.codebook = CosineCodebook(config.codebook_size, config.codebook_dim)

    def column_counts(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Full columns of 16 fbank frames made of each waveform (the frames after the last are
        dropped, as upstream's patch embedding drops them)."""
        frames = torch.div(sample_lengths - WINDOW, HOP, rounding_mode="floor") + 1
        return torch.div(frames, self.config.input_patch_size, rounding_mode="floor").clamp(min=0)

    def patch_counts(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Patch tokens made of each waveform: 8 per full column."""
        return self.column_counts(sample_lengths) * self.config.patches_per_column

    def fbanks(self, input_values: torch.Tensor, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(B, S) padded waveforms -> (B, F, 128) fbanks of each item's own samples, zero-padded."""
        check_min_samples(sample_lengths, self.config.min_samples, "BEATs", 16000)
        items = [fbank(wave[: int(length)]) for wave, length in zip(input_values, sample_lengths)]
        return nn.utils.rnn.pad_sequence(items, batch_first=True)

    def freeze_feature_encoder(self) -> None:
        """Stop training the patch embedding, the conv that turns fbank patches into features:
        BEATs' own switch for it is `feature_grad_mult` 0 (upstream runs the conv without
        gradients then), and transformers' audio models name it `freeze_feature_encoder`."""
        self.patch_embedding.requires_grad_(False)

    def patch_tokens(self, fbanks: torch.Tensor) -> torch.Tensor:
        """(B, F, 128) -> (B, N, D) projected patch embeddings, time-major: the first step of
        `forward` (not GMML's `embed_patches`, which embeds raw images to a grid of patches)."""
        patches = self.patch_embedding(fbanks.unsqueeze(1).to(self.patch_embedding.weight.dtype))
        tokens = patches.flatten(2).transpose(1, 2)
        return self.dropout_input(self.post_extract_proj(self.layer_norm(tokens)))

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Encode a padded batch of 16 kHz waveforms.

        Args:
            input_values: (B, S) waveforms in [-1, 1].
            attention_mask: (B, S), 1 for real samples; None means no padding.
            output_hidden_states: also return the L+1 hidden states (0 = transformer input).

        Shapes:
            last_hidden_state (B, N, D), mask (B, N), pooled (B, D).
        """
        sample_lengths = batch_lengths(input_values, attention_mask)
        tokens = self.patch_tokens(self.fbanks(input_values, sample_lengths))
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        mask = positions[None, :] < self.patch_counts(sample_lengths)[:, None]
        states = self.transformer(tokens, mask, positions)
        last = states[-1]
        pooled = pool_tokens(last, mask, "mean")
        return EncoderOutput(last_hidden_state=last, mask=mask, pooled=pooled,
                             hidden_states=tuple(states) if output_hidden_states else None)

    def frames(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, D) tokens -> (B, N / 8, D) column features (mean of the 8 bands) and their mask."""
        per_column = self.config.patches_per_column
        columns = tokens.view(tokens.shape[0], -1, per_column, tokens.shape[-1]).mean(2)
        return columns, mask.view(mask.shape[0], -1, per_column).all(-1)

    def check_is_tokenizer(self) -> None:
        """Refuse to quantize with an encoder: it has no codebook."""
        if not self.config.codebook_size:
            raise ConfigError("this BEATs checkpoint is an encoder, not a tokenizer: it has no codebook; "
                              "load a tokenizer (e.g. beats-tokenizer-iter3) to get labels")

    def quantize(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) tokenizer output -> (B, N) codebook indices (tokenizers only)."""
        self.check_is_tokenizer()
        return self.codebook.nearest(self.quantize_layer(tokens))

    @torch.no_grad()
    def tokenize(self, inputs: Any, batch_size: int = 8, progress: bool = True,
                 **prepare_kwargs: Any) -> list[torch.Tensor]:
        """Raw audio in, one (N_i,) tensor of acoustic-token labels per item (tokenizers only).

        Long recordings are cut into the processor's windows and their labels concatenated. An
        encoder is refused before any audio is embedded, not after. The codebook reads the last
        layer's tokens: layer= and pool= are refused, not passed on to `embed`.
        """
        self.check_is_tokenizer()
        refuse_fixed_options("tokenize", "a code per patch of the last layer", prepare_kwargs, ("layer", "pool"))
        tokens = self.embed(inputs, pool="none", batch_size=batch_size, progress=progress, **prepare_kwargs)
        return [self.quantize(item.unsqueeze(0).to(self.device, self.dtype)).squeeze(0).cpu() for item in tokens]

    def card_usage(self, inputs: str) -> tuple[str, str]:
        if not self.config.codebook_size:
            return super().card_usage(inputs)
        return ("acoustic tokenizer",
                f"model.tokenize({inputs})  # per clip, (patches,) indices into {self.config.codebook_size} codes")

    def embed_frames(self, inputs: Any, layer: LayerSpec = None, sampling_rate: Optional[int] = None,
                     **embed_kwargs: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Raw audio in; per item `(times, features)`: the mean of each 160 ms column's 8 tokens
        (6.25 Hz), (T_i, D) or (K, T_i, D) when `layer` names several layers, and the seconds
        (T_i,) at the centre of each column's 175 ms of samples (its 16 fbank frames of 25 ms, 10 ms
        apart: `min_samples`), the first at 0.0875 s. Recordings over 10 s are cut
        into windows on column boundaries (`zoo.audio.framed_windows`), so every column comes
        out once: the times and count are the whole recording's."""
        stamped = embed_timed_frames(self, inputs, layer, sampling_rate, self.column_counts,
                                     self.config.input_patch_size * HOP, self.config.min_samples, **embed_kwargs)
        return [(times, tokens.unflatten(-2, (-1, self.config.patches_per_column)).mean(-2))
                for times, tokens in stamped]


class TransformerEncoder(CheckpointedBlocks, nn.Module):
    """Positional conv, input LayerNorm, then post-LN layers sharing one relative-bias table."""

    def __init__(self, config: BEATsConfig) -> None:
        super().__init__()
        self.config = config
        width = config.encoder_embed_dim
        self.pos_conv = PositionalConv(width, config.conv_pos, config.conv_pos_groups)
        self.layer_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(config.dropout)
        alpha = (2.0 * config.encoder_layers) ** 0.25 if config.deep_norm else 1.0
        self.layers = nn.ModuleList(
            EncoderLayer(width, config.encoder_ffn_embed_dim, config.encoder_attention_heads, alpha, config.dropout,
                         config.attention_dropout, config.activation_dropout, config.gru_rel_pos,
                         config.attn_implementation)
            for _ in range(config.encoder_layers)
        )
        if config.relative_position_embedding:
            self.relative_attention_bias = nn.Embedding(config.num_buckets, config.encoder_attention_heads)

    def position_bias(self, positions: torch.Tensor) -> Optional[torch.Tensor]:
        """Ungated bias between the tokens at `positions`, their indices in the full sequence:
        (N,) positions give (H, N, N); (B, N) per-item positions (pretraining keeps a
        different subset of each item) give (B, H, N, N)."""
        if not self.config.relative_position_embedding:
            return None
        buckets = relative_buckets(positions, positions, self.config.num_buckets, self.config.max_distance)
        return self.relative_attention_bias(buckets).movedim(-1, -3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> list[torch.Tensor]:
        """(B, N, D) tokens, (B, N) valid mask, (N,) or (B, N) positions -> the L+1 states.

        Padded tokens are zeroed before the positional conv so that it sees what an item
        alone sees past its end: zeros.
        """
        x = x.masked_fill(~mask[..., None], 0.0)
        x = self.dropout(self.layer_norm(x + self.pos_conv(x)))
        bias = self.position_bias(positions)
        key_padding = None if bool(mask.all()) else ~mask
        states = [x]
        for index, layer in enumerate(self.layers):
            if self.training and self.config.encoder_layerdrop > 0 and torch.rand([]) < self.config.encoder_layerdrop:
                states.append(x)
                continue
            x = self.run_block(index, layer, x, bias, key_padding)
            states.append(x)
        return states

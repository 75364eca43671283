"""HuBERT (Hsu et al. 2021, https://arxiv.org/abs/2106.07447) on transformers' HubertModel.

The zoo reuses transformers' modules for every weight and recomputes only the glue, for
two reasons: (1) the first conv's GroupNorm (feat_extract_norm="group", HuBERT-base) spans
the whole padded length, so the zoo runs the conv front end per item (per group of equal
length) and pads after it; (2) on transformers 5 the last `hidden_states` entry of
stable-layer-norm models comes before the final LayerNorm, while the zoo's last entry is
always `last_hidden_state`.

Shapes: B items, S samples, T frames (50 Hz at 16 kHz), C conv channels, D width.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch
from transformers import HubertConfig, HubertModel
from transformers.masking_utils import create_bidirectional_mask

from zoo.audio import AudioProcessor, batch_lengths, check_min_samples, embed_timed_frames
from zoo.checkpointing import CheckpointedBlocks
from zoo.config import EncoderConfig
from zoo.encoder import Encoder
from zoo.errors import ConfigError
from zoo.numerics import grouped_conv1d
from zoo.outputs import EncoderOutput
from zoo.pooling import LayerSpec, pool_tokens

#: waveform samples the conv front end takes in one pass: its first layer makes 512 channels at a
#: fifth of the rate, so a batch of eight 30 s windows at 24 kHz (MERT's `embed` of a song) peaked
#: at 7,178 MiB; the rows of a longer batch run through it a few at a time
FRONT_END_SAMPLES = 1 << 20


@dataclasses.dataclass
class HubertEncoderConfig(EncoderConfig):
    """Architecture of a HuBERT encoder; field names match transformers' `HubertConfig`.

    Args:
        hidden_size: transformer width D (default: 768).
        num_hidden_layers: transformer layers (default: 12).
        num_attention_heads: heads per layer; must divide `hidden_size` (default: 12).
        intermediate_size: feed-forward width (default: 3072).
        conv_dim: output channels of each front-end conv (default: 7 x 512).
        conv_kernel: kernel of each conv (default: (10, 3, 3, 3, 3, 2, 2)).
        conv_stride: stride of each conv; their product is the frame hop (default: 320).
        conv_bias: whether the convs have a bias (default: False).
        feat_extract_norm: "group" (GroupNorm after the first conv, base) or "layer"
            (LayerNorm after every conv, large/xlarge) (default: "group").
        do_stable_layer_norm: pre-LN layers with a final LayerNorm (large/xlarge) instead of
            post-LN layers with an input LayerNorm (base) (default: False).
        feat_proj_layer_norm: LayerNorm before the feature projection (default: True).
        num_conv_pos_embeddings: kernel of the convolutional position embedding (default: 128).
        num_conv_pos_embedding_groups: its groups (default: 16).
        layer_norm_eps: epsilon of every LayerNorm (default: 1e-5).
        hidden_dropout / attention_dropout / activation_dropout / feat_proj_dropout: dropout
            rates used in training only (defaults: 0.1 / 0.1 / 0.0 / 0.0).
        layerdrop: probability of skipping a layer in training (default: 0.0).
    """

    family = "hubert"
    positive_fields = ("hidden_size", "intermediate_size", "conv_dim", "conv_kernel", "conv_stride",
                       "num_conv_pos_embeddings", "num_conv_pos_embedding_groups")

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    do_stable_layer_norm: bool = False
    feat_proj_layer_norm: bool = True
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    layer_norm_eps: float = 1e-5
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    feat_proj_dropout: float = 0.0
    layerdrop: float = 0.0

    def __post_init__(self) -> None:
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
            raise ConfigError(
                f"conv_dim {self.conv_dim}, conv_kernel {self.conv_kernel} and conv_stride "
                f"{self.conv_stride} must have one entry per conv layer"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if self.feat_extract_norm not in ("group", "layer"):
            raise ConfigError(f"feat_extract_norm={self.feat_extract_norm!r}; use 'group' or 'layer'")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_conv_pos_embedding_groups "
                f"{self.num_conv_pos_embedding_groups}"
            )

    @property
    def embed_dim(self) -> int:
        return self.hidden_size

    @property
    def num_layers(self) -> int:
        return self.num_hidden_layers

    @property
    def frame_hop(self) -> int:
        """Samples between frames (320 = 20 ms at 16 kHz)."""
        hop = 1
        for stride in self.conv_stride:
            hop *= stride
        return hop

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees: frame t covers [t * frame_hop, t * frame_hop + receptive_field) (400)."""
        field, jump = 1, 1
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def to_transformers(self) -> HubertConfig:
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(HubertEncoderConfig)}
        fields["conv_dim"], fields["conv_kernel"], fields["conv_stride"] = (
            list(self.conv_dim), list(self.conv_kernel), list(self.conv_stride)
        )
        # transformers allocates `masked_spec_embed` only when a mask probability is > 0;
        # the zoo applies masks itself (pretraining) but needs that parameter in every model
        return HubertConfig(**fields, mask_time_prob=0.05)

    @classmethod
    def from_transformers(cls, config: dict) -> "HubertEncoderConfig":
        """Pick the architecture fields out of a transformers `config.json` dict."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls.from_dict({key: value for key, value in config.items() if key in names})


VARIANTS = {
    "tiny": dict(
        hidden_size=192, num_hidden_layers=4, num_attention_heads=4, intermediate_size=768,
        conv_dim=(128,) * 7, num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=16,
    ),
    "base": dict(),
    "large": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True,
    ),
    "xlarge": dict(
        hidden_size=1280, num_hidden_layers=48, num_attention_heads=16, intermediate_size=5120,
        conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True,
    ),
}


#: where the encoder keeps transformers' HubertModel (`self.model`), in its state dict's names
TRANSFORMERS_PREFIX = "model."


class HubertEncoder(CheckpointedBlocks, Encoder):
    """HuBERT speech encoder: 16 kHz waveform -> 50 Hz frame features.

    `pooled` is the mean of the valid frames of the last layer.
    """

    family = "hubert"
    modality = "speech"
    config_class = HubertEncoderConfig
    processor_class = AudioProcessor
    unused_in_forward = ("model.masked_spec_embed",)  # used only with pretraining's mask_time_indices
    #: the transformers model a saved folder loads into as it is (`config_dict_to_save`), None for none
    transformers_model_type: Optional[str] = "hubert"

    def __init__(self, config: HubertEncoderConfig, processor: Optional[AudioProcessor] = None) -> None:
        super().__init__(config, processor)
        self.processor.align_to_frames(config.receptive_field, config.frame_hop)
        self.model = HubertModel(config.to_transformers())

    def config_dict_to_save(self) -> dict[str, Any]:
        """The config, with the transformers model type that reads the folder (its fields are
        HubertConfig's): AutoModel refused a saved folder, and HubertModel loaded it with every
        weight missing, all its outputs NaN, without an error."""
        config = super().config_dict_to_save()
        if self.transformers_model_type is None:
            return config
        return {**config, "model_type": self.transformers_model_type, "architectures": ["HubertModel"]}

    def weights_to_save(self) -> dict[str, torch.Tensor]:
        """HubertModel's weights under its own names (without `model.`), as transformers saves them."""
        state = self.state_dict()
        if self.transformers_model_type is None:
            return state
        return {key.removeprefix(TRANSFORMERS_PREFIX): value for key, value in state.items()}

    @classmethod
    def weights_from_saved(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Saved weights under the encoder's names: those saved in transformers' names get `model.`
        back; folders saved before, and MERT's, name them so already."""
        if cls.transformers_model_type is None:
            return state
        return {key if key.startswith(TRANSFORMERS_PREFIX) else TRANSFORMERS_PREFIX + key: value
                for key, value in state.items()}

    def embed_frames(
        self, inputs: Any, layer: LayerSpec = None, sampling_rate: Optional[int] = None, **embed_kwargs: Any
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Raw audio in; per item `(times, features)`: time-stamped frame embeddings.

        `times` (T_i,) are seconds at the centre of each frame's receptive field (frame t
        of a window starting at sample s covers [s + t * hop, s + t * hop + field)), and
        `features` is (T_i, D), or (K, T_i, D) when `layer` names several layers. Long
        recordings are cut into windows on frame boundaries (`zoo.audio.framed_windows`), so
        every frame comes out once: the times and count are the whole recording's.
        """
        return embed_timed_frames(self, inputs, layer, sampling_rate, self.frame_lengths, self.config.frame_hop,
                                  self.config.receptive_field, **embed_kwargs)

    def freeze_feature_encoder(self) -> None:
        """Stop training the conv front end, as transformers' `freeze_feature_encoder` and the
        HuBERT / wav2vec 2.0 fine-tuning recipes do (fairseq's `feature_grad_mult` 0): its
        pretrained filters stay, and fine-tuning keeps none of its activations, the largest."""
        self.model.feature_extractor.requires_grad_(False)

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Number of frames the conv front end makes of `sample_lengths` samples."""
        return self.model._get_feat_extract_output_lengths(sample_lengths).long()

    def extract_features(self, input_values: torch.Tensor, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(B, S) waveforms -> (B, T, C) conv features, zero after each item's last frame.

        With a GroupNorm front end, items of different lengths run separately (grouped by
        length) because the norm's statistics span every sample it is given.
        """
        if self.config.feat_extract_norm == "layer" or bool((sample_lengths == sample_lengths[0]).all()):
            return self.front_end(input_values[:, : int(sample_lengths.max())]).transpose(1, 2)
        frames = self.frame_lengths(sample_lengths)
        out = input_values.new_zeros(len(input_values), int(frames.max()), self.config.conv_dim[-1])
        for length in sample_lengths.unique():
            rows = (sample_lengths == length).nonzero().squeeze(1)
            group = self.front_end(input_values[rows, : int(length)]).transpose(1, 2)
            out[rows, : group.shape[1]] = group.to(out.dtype)
        return out

    def front_end(self, waves: torch.Tensor) -> torch.Tensor:
        """(B, S) waveforms -> (B, C, T): transformers' conv feature encoder, run layer by
        layer so that each layer can be checkpointed (its largest activations in training), and
        `FRONT_END_SAMPLES` at a time (whole rows; each row's features are its own alone)."""
        rows = max(1, FRONT_END_SAMPLES // max(waves.shape[1], 1))
        if len(waves) > rows:
            return torch.cat([self.front_end(part) for part in waves.split(rows)])
        hidden = waves[:, None]
        for index, conv in enumerate(self.model.feature_extractor.conv_layers):
            hidden = self.run_block(index, conv, hidden)
        return hidden

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
        mask_time_indices: Optional[torch.Tensor] = None,
    ) -> EncoderOutput:
        """Encode a padded batch of waveforms.

        Args:
            input_values: (B, S) float waveforms at the processor's rate (taken in the weights' dtype).
            attention_mask: (B, S), 1 for real samples; None means no padding.
            output_hidden_states: also return the L+1 hidden states.
            mask_time_indices: (B, T) bool frames to replace by the learned mask embedding
                (pretraining only).

        Shapes:
            last_hidden_state (B, T, D), mask (B, T), pooled (B, D).
        """
        sample_lengths = batch_lengths(input_values, attention_mask)
        check_min_samples(sample_lengths, self.config.receptive_field, type(self).__name__,
                          self.processor.sampling_rate)
        input_values = input_values.to(self.dtype)
        features = self.extract_features(input_values, sample_lengths)
        return self.encode_features(features, input_values, sample_lengths, output_hidden_states, mask_time_indices)

    def encode_features(
        self,
        features: torch.Tensor,
        input_values: torch.Tensor,
        sample_lengths: torch.Tensor,
        output_hidden_states: bool = False,
        mask_time_indices: Optional[torch.Tensor] = None,
    ) -> EncoderOutput:
        """(B, T, C) conv features -> the encoder's output (the rest of `forward`).

        Split from `forward` so that a pretraining objective can see the conv features
        (e.g. MERT's feature penalty) without running the front end twice.
        """
        frames = torch.arange(features.shape[1], device=features.device)
        mask = frames[None, :] < self.frame_lengths(sample_lengths)[:, None]
        hidden = self.project_features(features, input_values)
        if mask_time_indices is not None:
            hidden = torch.where(mask_time_indices[..., None], self.model.masked_spec_embed.to(hidden.dtype), hidden)
        states = self.run_transformer(hidden, mask)
        last = states[-1]
        pooled = pool_tokens(last, mask, "mean")
        return EncoderOutput(
            last_hidden_state=last, mask=mask, pooled=pooled,
            hidden_states=tuple(states) if output_hidden_states else None,
        )

    def project_features(self, features: torch.Tensor, input_values: torch.Tensor) -> torch.Tensor:
        """(B, T, C) conv features -> (B, T, D) transformer inputs (`input_values` for
        families whose projection also reads the waveform)."""
        return self.model.feature_projection(features)

    def run_layer(self, layer: torch.nn.Module, hidden: torch.Tensor,
                  attention: Optional[torch.Tensor]) -> torch.Tensor:
        """One transformer layer; a family with another residual rule overrides it."""
        return layer(hidden, attention_mask=attention)

    def positional_embedding(self, hidden: torch.Tensor) -> torch.Tensor:
        """transformers' HubertPositionalConvEmbedding, step by step, with its conv through
        `zoo.numerics.grouped_conv1d` (oneDNN's bfloat16 kernel is wrong for the tiny
        models' 12 channels per group on AVX-512-BF16 CPUs)."""
        positional = self.model.encoder.pos_conv_embed
        hidden = hidden.transpose(1, 2)
        if positional.batch_norm is not None:
            hidden = positional.batch_norm(hidden)
        hidden = positional.activation(positional.padding(grouped_conv1d(positional.conv, hidden)))
        return hidden.transpose(1, 2)

    def run_transformer(self, hidden: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Positional conv + layers; returns the L+1 states, the last after any final LayerNorm."""
        encoder = self.model.encoder
        hidden = hidden.masked_fill(~mask[..., None], 0.0)
        attention = create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden, attention_mask=mask)
        hidden = hidden + self.positional_embedding(hidden)
        if not self.config.do_stable_layer_norm:
            hidden = encoder.layer_norm(hidden)
        hidden = encoder.dropout(hidden)
        states = [hidden]
        for index, layer in enumerate(encoder.layers):
            if self.training and self.config.layerdrop > 0 and torch.rand([]) < self.config.layerdrop:
                states.append(hidden)
                continue
            hidden = self.run_block(index, self.run_layer, layer, hidden, attention)
            states.append(hidden)
        if self.config.do_stable_layer_norm:
            states[-1] = encoder.layer_norm(states[-1])
        return states

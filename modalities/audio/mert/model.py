"""MERT (Li et al. 2023, https://arxiv.org/abs/2306.00107): HuBERT for music.

A MERT checkpoint is a HuBERT with the same keys; the released MERT-v1 configs run as
the zoo's `HubertEncoder` exactly (the golden fixtures show 0.0 against the official
remote code). What MERT adds is switched on by config flags, and implemented here:

- `deepnorm`: post-LN layers with the residual scaled, LN(alpha * x + f(x)) with
  alpha = (2 L)^(1/4), for attention and feed-forward alike (no new weights);
- `feature_extractor_cqt`: an nnAudio constant-Q transform of the waveform (hop =
  sample_rate / 50, 7 octaves from 32.7 Hz) concatenated to the conv features before
  the feature projection, whose input widens by `feature_extractor_cqt_bins`;
- `attention_relax`: read and kept for fidelity; softmax is shift-invariant, so the
  official relaxed attention equals plain attention and nothing is computed for it.

Everything else (the per-item conv front end that keeps padding out of the first
GroupNorm, the last hidden state after the final LayerNorm) is inherited from HuBERT.

Shapes: B items, S samples, T frames (75 Hz at 24 kHz, 50 Hz at 16 kHz), C conv
channels, Q CQT bins, D width.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Optional

import torch
from torch import nn
from transformers.models.hubert.modeling_hubert import HubertFeatureProjection

from modalities.speech.hubert.model import HubertEncoder, HubertEncoderConfig
from zoo.audio import AudioProcessor
from zoo.errors import ConfigError

#: lowest CQT frequency (C1) and octaves, as the official CQT front end and teacher
CQT_FMIN = 32.7
CQT_OCTAVES = 7
#: CQT frames per second of MERT's CQT front end (hop = sample_rate // 50)
CQT_FRONT_END_RATE = 50


def constant_q(sample_rate: int, hop_length: int, bins: int) -> nn.Module:
    """nnAudio's CQT as MERT configures it (fmin 32.7 Hz, bins / 7 per octave, magnitude).

    Its kernels are rebuilt from these settings, so they are made non-persistent: they
    stay out of the state dict (the official files leave them out too, or hold them as
    11 MB of redundant buffers).
    """
    from nnAudio.features.cqt import CQT

    if bins % CQT_OCTAVES:
        raise ConfigError(f"CQT bins={bins} must be a multiple of {CQT_OCTAVES} (octaves from {CQT_FMIN} Hz)")
    cqt = CQT(sr=sample_rate, hop_length=hop_length, fmin=CQT_FMIN, fmax=None, n_bins=bins,
              bins_per_octave=bins // CQT_OCTAVES, filter_scale=1, norm=1, window="hann", center=True,
              pad_mode="constant", trainable=False, output_format="Magnitude", verbose=False)
    for name, buffer in list(cqt.named_buffers(recurse=False)):
        cqt.register_buffer(name, buffer, persistent=False)
    return cqt


@dataclasses.dataclass
class MertEncoderConfig(HubertEncoderConfig):
    """Architecture of a MERT encoder: HuBERT's fields plus MERT's, named as in MERT's config.json.

    Args:
        deepnorm: DeepNorm residuals in post-LN layers (default: False; no released
            checkpoint sets it).
        attention_relax: the official relaxed attention's factor; no effect on outputs
            (default: -1.0, off).
        feature_extractor_cqt: concatenate a CQT to the conv features (default: False).
        feature_extractor_cqt_bins: CQT bins of that front end (default: 336).
        sample_rate: the rate the model was trained at; the CQT front end needs it
            (default: 24000, MERT-v1).
        Other fields: see `HubertEncoderConfig`.
    """

    family = "mert"
    positive_fields = (*HubertEncoderConfig.positive_fields, "sample_rate")

    deepnorm: bool = False
    attention_relax: float = -1.0
    feature_extractor_cqt: bool = False
    feature_extractor_cqt_bins: int = 336
    sample_rate: int = 24000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.deepnorm and self.do_stable_layer_norm:
            raise ConfigError("deepnorm=True needs post-LN layers; set do_stable_layer_norm=False (as MERT requires)")
        if self.feature_extractor_cqt and self.sample_rate // CQT_FRONT_END_RATE != self.frame_hop:
            raise ConfigError(
                f"feature_extractor_cqt: the CQT hop (sample_rate {self.sample_rate} // {CQT_FRONT_END_RATE} = "
                f"{self.sample_rate // CQT_FRONT_END_RATE}) must equal the conv hop {self.frame_hop}, or the CQT "
                "has fewer frames than the conv features (the official code fails there too); use "
                f"sample_rate={self.frame_hop * CQT_FRONT_END_RATE}"
            )

    @property
    def projection_input(self) -> int:
        """Width the feature projection reads: conv channels, plus CQT bins when enabled."""
        return self.conv_dim[-1] + (self.feature_extractor_cqt_bins if self.feature_extractor_cqt else 0)


VARIANTS = {
    "tiny": dict(
        hidden_size=192, num_hidden_layers=4, num_attention_heads=4, intermediate_size=768,
        conv_dim=(128,) * 7, num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=16,
    ),
    "95m": dict(layerdrop=0.05, feat_proj_dropout=0.1),  # MERT_RVQ-VAE_CQT_95M.yaml: dropout_input 0.1
    "330m": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        do_stable_layer_norm=True, attention_relax=32.0, hidden_dropout=0.0, attention_dropout=0.0,
    ),
}


def _deepnorm_layer(layer: nn.Module, hidden: torch.Tensor, attention: Optional[torch.Tensor],
                    alpha: float) -> torch.Tensor:
    """A post-LN HubertEncoderLayer's weights under DeepNorm: LN(alpha * x + f(x)) twice."""
    attended, _ = layer.attention(hidden, attention_mask=attention)
    hidden = layer.layer_norm(alpha * hidden + layer.dropout(attended))
    return layer.final_layer_norm(alpha * hidden + layer.feed_forward(hidden))


class MertEncoder(HubertEncoder):
    """MERT music encoder: waveform at 24 kHz (v1) or 16 kHz (v0) -> 75 / 50 Hz frames.

    `pooled` is the mean of the valid frames of the last layer. MERT's authors
    recommend every layer (`embed(..., layer="all")`, (N, L+1, D)), probed one by one or
    combined with learned weights.
    """

    family = "mert"
    modality = "audio"
    config_class = MertEncoderConfig
    processor_class = AudioProcessor
    transformers_model_type = None  # MERT's variants are not HubertModel's: its folders are the zoo's own

    def __init__(self, config: MertEncoderConfig, processor: Optional[AudioProcessor] = None) -> None:
        super().__init__(config, processor)
        if config.feature_extractor_cqt:
            widened = copy.deepcopy(self.model.config)
            widened.conv_dim = [*config.conv_dim[:-1], config.projection_input]
            self.model.feature_projection = HubertFeatureProjection(widened)
            self.cqt = constant_q(config.sample_rate, config.sample_rate // CQT_FRONT_END_RATE,
                                  config.feature_extractor_cqt_bins)
        if config.deepnorm:
            self._scale_deepnorm_init()

    @classmethod
    def default_processor_settings(cls, config: MertEncoderConfig) -> dict[str, Any]:
        return {"sampling_rate": config.sample_rate}

    def _scale_deepnorm_init(self) -> None:
        """DeepNorm's init: value, output and feed-forward weights divided by (8 L)^(1/4)."""
        beta = (8.0 * self.config.num_hidden_layers) ** 0.25
        with torch.no_grad():
            for name, parameter in self.model.encoder.layers.named_parameters():
                if any(part in name for part in ("feed_forward.", "out_proj", "v_proj")):
                    parameter.div_(beta)

    @property
    def residual_alpha(self) -> float:
        return math.pow(2.0 * self.config.num_hidden_layers, 0.25) if self.config.deepnorm else 1.0

    def project_features(self, features: torch.Tensor, input_values: torch.Tensor) -> torch.Tensor:
        """Conv features (with the CQT of the waveform appended, when configured) -> (B, T, D).

        The CQT is batch-invariant as it is: its windows are zero-padded past the ends,
        and a padded batch holds zeros there too, so valid frames match the item alone.
        """
        if self.config.feature_extractor_cqt:
            cqt = self.cqt(input_values).transpose(1, 2)[:, : features.shape[1]]
            features = torch.cat([features, cqt.to(features.dtype)], dim=-1)
        return self.model.feature_projection(features)

    def run_layer(self, layer: nn.Module, hidden: torch.Tensor, attention: Optional[torch.Tensor]) -> torch.Tensor:
        if self.config.deepnorm:
            return _deepnorm_layer(layer, hidden, attention, self.residual_alpha)
        return super().run_layer(layer, hidden, attention)

"""The zoo's GMML ViT as transformers' `ViTModel` holding the very same weights.

ViTModel is the same architecture (pre-LN, qkv bias, exact GELU, cls + learned positions)
with the fused qkv split into query, key and value. Used by the parity test and by
benchmarks/bench_gmml.py to compare speed on identical numbers. At the stored image size
both compute the same outputs (ViTModel resamples positions differently at other sizes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from modalities.vision.gmml.model import GmmlEncoder

if TYPE_CHECKING:
    from transformers import ViTModel

#: ViTModel's names of one layer's parts: transformers 5 (`layers.N.`) and 4 (`encoder.layer.N.`)
LAYER_NAMES = {
    "layers": dict(query="attention.q_proj", key="attention.k_proj", value="attention.v_proj",
                   proj="attention.o_proj", norm1="layernorm_before", norm2="layernorm_after",
                   fc1="mlp.fc1", fc2="mlp.fc2"),
    "encoder.layer": dict(query="attention.attention.query", key="attention.attention.key",
                          value="attention.attention.value", proj="attention.output.dense",
                          norm1="layernorm_before", norm2="layernorm_after", fc1="intermediate.dense",
                          fc2="output.dense"),
}


def vit_state_dict(encoder: GmmlEncoder, layers: str) -> dict[str, torch.Tensor]:
    """The encoder's weights under ViTModel's names (`layers`: its layer-list prefix)."""
    backbone, names = encoder.backbone, LAYER_NAMES[layers]
    state = {
        "embeddings.cls_token": backbone.cls_token,
        "embeddings.position_embeddings": backbone.pos_embed,
        "embeddings.patch_embeddings.projection.weight": backbone.patch_embed.proj.weight,
        "embeddings.patch_embeddings.projection.bias": backbone.patch_embed.proj.bias,
        "layernorm.weight": backbone.norm.weight,
        "layernorm.bias": backbone.norm.bias,
    }
    for index, block in enumerate(backbone.blocks):
        qkv_bias = block.attn.qkv.bias.chunk(3) if block.attn.qkv.bias is not None else (None,) * 3
        parts = dict(zip(("query", "key", "value"), zip(block.attn.qkv.weight.chunk(3), qkv_bias)))
        parts.update({name: (module.weight, module.bias) for name, module in (
            ("proj", block.attn.proj), ("norm1", block.norm1), ("norm2", block.norm2), ("fc1", block.mlp.fc1),
            ("fc2", block.mlp.fc2))})
        for part, (weight, bias) in parts.items():
            state[f"{layers}.{index}.{names[part]}.weight"] = weight
            if bias is not None:  # qkv_bias=False: ViTModel has no query / key / value bias either
                state[f"{layers}.{index}.{names[part]}.bias"] = bias
    return state


def to_transformers_vit(encoder: GmmlEncoder, attn_implementation: str = "sdpa") -> ViTModel:
    """A `transformers.ViTModel` (no pooler, eval mode) with the encoder's config and weights."""
    from transformers import ViTConfig, ViTModel

    config = encoder.config
    vit_config = ViTConfig(
        hidden_size=config.hidden_size, num_hidden_layers=config.depth, num_attention_heads=config.num_heads,
        intermediate_size=int(config.hidden_size * config.mlp_ratio), hidden_act="gelu",
        layer_norm_eps=config.layer_norm_eps, image_size=config.image_size, patch_size=config.patch_size,
        num_channels=config.in_channels, qkv_bias=config.qkv_bias, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)
    vit = ViTModel._from_config(vit_config, attn_implementation=attn_implementation, add_pooling_layer=False)
    layers = "layers" if "layers.0.layernorm_before.weight" in vit.state_dict() else "encoder.layer"
    vit.load_state_dict(vit_state_dict(encoder, layers), strict=True)
    return vit.eval()

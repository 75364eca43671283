"""The zoo's GMML ViT computes what transformers' ViTModel computes on the same weights.

ViTModel (pre-LN, qkv bias, exact GELU, cls + learned positions) is configured with the
GMML sizes and LayerNorm eps 1e-6; the fused qkv is split into its query, key and value.
At the stored image size (no interpolation: ViTModel resamples positions differently),
the input embeddings, every block output and the final LayerNorm agree. Tolerance: max
abs diff 1e-5 (measured: 0.0, both run torch's fused attention).
"""

from __future__ import annotations

import torch

TOLERANCE = 1e-5


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


def vit_state_dict(encoder, layers: str) -> dict[str, torch.Tensor]:
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
        parts = dict(zip(("query", "key", "value"), zip(block.attn.qkv.weight.chunk(3), block.attn.qkv.bias.chunk(3))))
        parts.update({name: (module.weight, module.bias) for name, module in (
            ("proj", block.attn.proj), ("norm1", block.norm1), ("norm2", block.norm2), ("fc1", block.mlp.fc1),
            ("fc2", block.mlp.fc2))})
        for part, (weight, bias) in parts.items():
            state[f"{layers}.{index}.{names[part]}.weight"] = weight
            state[f"{layers}.{index}.{names[part]}.bias"] = bias
    return state


def test_same_weights_give_transformers_vit_outputs():
    from transformers import ViTConfig, ViTModel

    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder

    torch.manual_seed(0)
    config = GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=3, num_heads=3)
    encoder = GmmlEncoder(config).eval()
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    vit = ViTModel(ViTConfig(hidden_size=24, num_hidden_layers=3, num_attention_heads=3, intermediate_size=96,
                             hidden_act="gelu", layer_norm_eps=1e-6, image_size=32, patch_size=4, qkv_bias=True,
                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                   add_pooling_layer=False).eval()
    layers = "layers" if "layers.0.layernorm_before.weight" in vit.state_dict() else "encoder.layer"
    vit.load_state_dict(vit_state_dict(encoder, layers), strict=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = encoder(images, output_hidden_states=True)
        raw = encoder.block_states(images)
        theirs = vit(pixel_values=images, output_hidden_states=True)
    assert len(theirs.hidden_states) == len(raw) == 4
    for mine, reference in zip(raw, theirs.hidden_states):
        assert (mine - reference).abs().max() <= TOLERANCE
    assert (ours.last_hidden_state - theirs.last_hidden_state).abs().max() <= TOLERANCE
    assert torch.equal(ours.hidden_states[-1], ours.last_hidden_state)
    assert all(torch.equal(mine, state) for mine, state in zip(ours.hidden_states[:-1], raw[:-1]))

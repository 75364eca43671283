"""A tiny HuBERT in fairseq's checkpoint layout with random weights, written from fairseq's
module structure (fairseq/models/hubert/hubert.py and wav2vec/wav2vec2.py:
ConvFeatureExtractionModel, make_conv_pos, TransformerSentenceEncoderLayer), independently
of the converter's KEY_MAP. Used by the converter tests and the upstream-download tests."""

from __future__ import annotations

import torch

CONV_LAYERS = "[(24,10,5)] + [(24,3,2)] * 2"  # conv width 24 != hidden 32, so post_extract_proj exists
DIM, FFN, HEADS, LAYERS, POS_KERNEL, POS_GROUPS, FINAL_DIM = 32, 64, 4, 2, 16, 4, 8
PRETRAINING_HEADS = {"label_embs_concat", "final_proj.weight", "final_proj.bias"}
MODES = {  # fairseq (extractor_mode, layer_norm_first, conv_bias): base-like and large-like
    "group_post_ln": ("default", False, False),
    "layer_pre_ln": ("layer_norm", True, True),
}


def fairseq_model_cfg(mode: str) -> dict:
    """fairseq `cfg["model"]` of a tiny HuBERT in the given mode."""
    extractor_mode, layer_norm_first, conv_bias = MODES[mode]
    return {
        "_name": "hubert",
        "extractor_mode": extractor_mode,
        "layer_norm_first": layer_norm_first,
        "conv_bias": conv_bias,
        "conv_feature_layers": CONV_LAYERS,
        "encoder_layers": LAYERS,
        "encoder_embed_dim": DIM,
        "encoder_ffn_embed_dim": FFN,
        "encoder_attention_heads": HEADS,
        "conv_pos": POS_KERNEL,
        "conv_pos_groups": POS_GROUPS,
        "final_dim": FINAL_DIM,
    }


def fairseq_shapes(mode: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of fairseq's HubertModel.state_dict() for the tiny config."""
    extractor_mode, _, conv_bias = MODES[mode]
    shapes: dict[str, tuple[int, ...]] = {}
    in_dim = 1
    for i, (dim, kernel, _) in enumerate([(24, 10, 5), (24, 3, 2), (24, 3, 2)]):
        shapes[f"feature_extractor.conv_layers.{i}.0.weight"] = (dim, in_dim, kernel)
        if conv_bias:
            shapes[f"feature_extractor.conv_layers.{i}.0.bias"] = (dim,)
        if extractor_mode == "layer_norm":  # Sequential(TransposeLast, Fp32LayerNorm, TransposeLast)
            norm = f"feature_extractor.conv_layers.{i}.2.1"
        else:  # Fp32GroupNorm in the first block only
            norm = "feature_extractor.conv_layers.0.2" if i == 0 else None
        if norm:
            shapes[f"{norm}.weight"] = shapes[f"{norm}.bias"] = (dim,)
        in_dim = dim
    shapes["mask_emb"] = (DIM,)
    shapes["post_extract_proj.weight"], shapes["post_extract_proj.bias"] = (DIM, in_dim), (DIM,)
    shapes["layer_norm.weight"] = shapes["layer_norm.bias"] = (in_dim,)
    shapes["encoder.pos_conv.0.bias"] = (DIM,)
    shapes["encoder.pos_conv.0.weight_g"] = (1, 1, POS_KERNEL)  # weight_norm(dim=2)
    shapes["encoder.pos_conv.0.weight_v"] = (DIM, DIM // POS_GROUPS, POS_KERNEL)
    for i in range(LAYERS):
        layer = f"encoder.layers.{i}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            shapes[f"{layer}.self_attn.{proj}.weight"] = (DIM, DIM)
            shapes[f"{layer}.self_attn.{proj}.bias"] = (DIM,)
        shapes[f"{layer}.fc1.weight"], shapes[f"{layer}.fc1.bias"] = (FFN, DIM), (FFN,)
        shapes[f"{layer}.fc2.weight"], shapes[f"{layer}.fc2.bias"] = (DIM, FFN), (DIM,)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            shapes[f"{layer}.{norm}.weight"] = shapes[f"{layer}.{norm}.bias"] = (DIM,)
    shapes["encoder.layer_norm.weight"] = shapes["encoder.layer_norm.bias"] = (DIM,)
    shapes["final_proj.weight"], shapes["final_proj.bias"] = (FINAL_DIM, DIM), (FINAL_DIM,)
    shapes["label_embs_concat"] = (5, FINAL_DIM)
    return shapes


def fairseq_state_dict(mode: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random fairseq-layout weights; g is kept positive like a real weight-norm magnitude."""
    generator = torch.Generator().manual_seed(seed)
    sd = {key: 0.3 * torch.randn(shape, generator=generator) for key, shape in fairseq_shapes(mode).items()}
    sd["encoder.pos_conv.0.weight_g"] = sd["encoder.pos_conv.0.weight_g"].abs() + 0.5
    return sd

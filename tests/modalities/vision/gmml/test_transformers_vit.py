"""The zoo's GMML ViT computes what transformers' ViTModel computes on the same weights.

ViTModel (pre-LN, qkv bias, exact GELU, cls + learned positions) is configured with the
GMML sizes and LayerNorm eps 1e-6; the fused qkv is split into its query, key and value
(modalities/vision/gmml/transformers_vit.py).
At the stored image size (no interpolation: ViTModel resamples positions differently),
the input embeddings, every block output and the final LayerNorm agree. Tolerance: max
abs diff 1e-5 (measured: 0.0, both run torch's fused attention).
"""

from __future__ import annotations

import torch

TOLERANCE = 1e-5


def test_same_weights_give_transformers_vit_outputs():
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder
    from modalities.vision.gmml.transformers_vit import to_transformers_vit

    torch.manual_seed(0)
    config = GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=3, num_heads=3)
    encoder = GmmlEncoder(config).eval()
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    vit = to_transformers_vit(encoder, attn_implementation="sdpa")
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


def test_an_encoder_without_qkv_bias_converts_too():
    """GmmlConfig(qkv_bias=False) raised AttributeError: 'NoneType' object has no attribute 'chunk'."""
    from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder
    from modalities.vision.gmml.transformers_vit import to_transformers_vit

    torch.manual_seed(0)
    encoder = GmmlEncoder(GmmlConfig(image_size=32, patch_size=4, hidden_size=24, depth=2, num_heads=3,
                                     qkv_bias=False)).eval()
    vit = to_transformers_vit(encoder)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (encoder(images).last_hidden_state - vit(pixel_values=images).last_hidden_state).abs().max() <= TOLERANCE

"""GMML's reconstruction head starts as upstream's `RECHead` does (Sara-Ahmed/GMML
vision_transformer.py): its three Linear layers get `_init_weights`, truncated-normal
weights of std 0.02 and zero biases; the transposed convolution, built after that call,
keeps torch's default."""

from __future__ import annotations

import torch

from modalities.vision.gmml.model import GmmlConfig, GmmlEncoder
from modalities.vision.gmml.reconstruction import ReconstructionHead


def linear_layers(head: ReconstructionHead) -> list[torch.nn.Linear]:
    return [layer for layer in head.mlp if isinstance(layer, torch.nn.Linear)]


def test_head_mlp_starts_like_upstream_rechead():
    torch.manual_seed(0)
    head = ReconstructionHead(192, 4)
    layers = linear_layers(head)
    assert len(layers) == 3
    for layer in layers:
        assert 0.019 < float(layer.weight.std()) < 0.021  # torch's default here would be 1 / sqrt(3 * 192) = 0.042
        assert not layer.bias.any()
    assert head.to_pixels.bias.any()  # the transposed convolution keeps torch's default init


def test_a_pretraining_encoder_gets_the_upstream_head_init():
    torch.manual_seed(0)
    encoder = GmmlEncoder(GmmlConfig(image_size=32, patch_size=4, hidden_size=96, depth=2, num_heads=3,
                                     recons_blocks=(1, 2), reconstruction_head=True))
    for layer in linear_layers(encoder.reconstruction):
        assert 0.018 < float(layer.weight.std()) < 0.022 and not layer.bias.any()

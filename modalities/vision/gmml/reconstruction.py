"""GMML's reconstruction head (`RECHead` of Sara-Ahmed/GMML `main.py`): patch tokens -> pixels.

Three Linear + exact GELU layers keep the width D; a transposed convolution with kernel
and stride p then turns each token into its p x p x 3 patch. There is no output
activation: the image comes out in the ImageNet-normalised space the encoder reads, since
GMML's L1 loss compares it with the clean normalised crop.

The Linear layers start as upstream's `RECHead._init_weights` starts them (truncated
normal, std 0.02, zero biases), the convolution with torch's default, as upstream builds it
after that call. (The embedded gmml-vit-tiny-cifar10 was trained from torch's default
Linear init: std 0.042 at D = 192, non-zero biases.)

Shapes: B images, h x w patch grid, N = h * w, D width, p patch side.
"""

from __future__ import annotations

import torch
from torch import nn

from modalities.vision.gmml.vit import init_linear

#: depth of the head's MLP (upstream's `mlp.0`, `mlp.2`, `mlp.4`, each followed by a GELU)
MLP_LAYERS = 3


class ReconstructionHead(nn.Module):
    """(B, N, D) patch tokens on an h x w grid -> (B, 3, h * p, w * p) image.

    Upstream folds the tokens into a sqrt(N) x sqrt(N) square, so it handles square grids
    only; here the grid is passed in, which gives the same numbers on squares and also
    serves non-square images.
    """

    def __init__(self, dim: int, patch_size: int, out_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(MLP_LAYERS):
            layers += [nn.Linear(dim, dim), nn.GELU()]
        self.mlp = nn.Sequential(*layers)
        self.mlp.apply(init_linear)
        self.to_pixels = nn.ConvTranspose2d(dim, out_channels, kernel_size=patch_size, stride=patch_size)

    def forward(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        tokens = self.mlp(patches)
        return self.to_pixels(tokens.transpose(1, 2).unflatten(2, grid))

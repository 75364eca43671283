"""Graph encoders on PyTorch Geometric: tokens are nodes, pooled is the graph readout.

PyG is imported here first, with its import-time `torch.jit.script` calls kept quiet: torch
>= 2.10 calls them deprecated, and every `zoo.load` of a graph checkpoint printed that
FutureWarning, which names nothing the user can change (the CLI hides it the same way)."""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    import torch_geometric.nn  # noqa: F401

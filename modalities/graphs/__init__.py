"""Graph encoders on PyTorch Geometric: tokens are nodes, pooled is the graph readout."""

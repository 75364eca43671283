"""Write `step.pt`: one GraphMAE pretraining step of a small GAT model run by the official (DGL) code.

Run with a Python that has DGL (benchmarks/README.md, "GraphMAE", sets one up) from a checkout
of THUDM/GraphMAE (b14f080):

    cd /tmp/graphmae_official && PYTHONPATH=. /tmp/dglenv/bin/python \\
        /path/to/ssl-zoo/tests/modalities/graphs/graphmae/official_gat_step/make.py

The model is Cora's recipe shrunk (`main_transductive.py --use_cfg` values: GAT encoder and
decoder, PReLU, in_drop 0.2, attn_drop 0.1, mask 0.5, replace 0.05, SCE alpha 3, one output
head) with 12 hidden units in 3 heads, on 80 nodes, so that the token/replace split of the 40
masked nodes is 38/2 with no node left over. The file holds the edge list the step ran on
(undirected, one self-loop per node, in DGL's edge order), the features, the official
`PreModel.state_dict()` before the step (biases and the mask token made non-zero), and after
`torch.manual_seed(SEED)` the training-mode loss and every parameter's gradient.
"""

import sys
from pathlib import Path

import dgl
import torch
from graphmae.models import build_model
from graphmae.utils import build_args

SEED = 5
ARGS = ["--encoder", "gat", "--decoder", "gat", "--activation", "prelu", "--num_hidden", "12", "--num_heads", "3",
        "--num_layers", "2", "--in_drop", "0.2", "--attn_drop", "0.1", "--mask_rate", "0.5", "--replace_rate", "0.05",
        "--alpha_l", "3", "--loss_fn", "sce"]


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(80, 10, generator=generator)
    source, target = torch.randint(0, 80, (2, 200), generator=generator)
    graph = dgl.to_bidirected(dgl.graph((source, target), num_nodes=80)).remove_self_loop().add_self_loop()
    sys.argv = ["main_transductive.py", *ARGS]
    options = build_args()
    options.num_features = 10
    torch.manual_seed(0)
    model = build_model(options)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or name == "enc_mask_token":
                param.normal_(0.0, 0.1)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    model.train()
    torch.manual_seed(SEED)
    loss, _ = model(graph, x)
    loss.backward()
    grads = {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}
    out = Path(__file__).with_name("step.pt")
    torch.save({"x": x, "edge_index": torch.stack(graph.edges()), "state": state, "loss": loss.detach(),
                "grads": grads}, out)
    print(f"wrote {out}: loss {loss.item():.6f}, dgl {dgl.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()

"""The paper's downstream networks: the official ResNet's shape and its cycling learning rate."""

import torch

from modalities.tabular.downstream import MLP_ADULT, RESNET_ADULT, Task, build_resnet, cosine_schedule


def test_resnet_has_the_official_adult_shape():
    model = build_resnet((15, 64), 1, RESNET_ADULT)
    body = model[1]
    assert len(body.blocks) == 5 and body.blocks[0].linear1.out_features == 4 * 440
    assert body.input_projection.in_features == 15 and model[2].in_features == 128
    # per-token map 15*64+15, input 15*440+440, 5 blocks of (BN 880 + 2 linears 440<->1760), output BN + 440->128, head
    expected = 975 + 7040 + 5 * (880 + 440 * 1760 + 1760 + 1760 * 440 + 440) + 880 + 440 * 128 + 128 + 129
    assert sum(p.numel() for p in model.parameters()) == expected == 7_824_872


def learning_rates(settings, steps, batches=57):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=settings["lr"])
    schedule = cosine_schedule(optimizer, settings, batches)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_resnet_learning_rate_cycles_every_20_steps_as_upstream():
    rates = learning_rates(RESNET_ADULT, 41)
    assert rates[0] == RESNET_ADULT["lr"] and abs(rates[20] - rates[0]) < 1e-15 and abs(rates[40] - rates[0]) < 1e-15
    assert rates[10] < 1e-12 and rates[30] < 1e-12
    # the lr the official ResNet runs logged at their end (results/adult_AD/resnet: 3.0758e-4) is step 6 of a cycle
    assert abs(rates[6] - 3.075785643886775e-4) < 1e-9


def test_mlp_learning_rate_falls_once_over_the_epoch_budget():
    rates = learning_rates(MLP_ADULT, 200)
    assert all(later < earlier for earlier, later in zip(rates[1:], rates[2:]))
    assert rates[-1] > 0.99 * MLP_ADULT["lr"]


def test_a_binary_task_predicts_the_positive_class_from_a_positive_logit():
    """Binary logits are trained with BCE-with-logits, so probability 0.5 is logit 0: logit 0.3
    (p = 0.57) is class 1 and -0.3 class 0 (a threshold of 0.5 on logits would call 0.3 negative)."""
    assert Task("binary").predict(torch.tensor([[0.3], [-0.3], [0.7]])).tolist() == [1, 0, 1]

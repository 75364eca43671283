"""Fine-tuning heads: an encoder plus a linear layer on its pooled features, or on each of its
tokens (graph nodes, audio frames, image patches).

They are plain `nn.Module`s: train them in your own loop or in transformers' `Trainer`
(forward takes the batch and `labels`, returns `loss` and `logits`), and save or load
them like any zoo checkpoint (config.json carries the encoder config and a "head" entry).
On raw inputs, `logits` / `probabilities` / `predict` score each item as `embed` rows it:
alone or in any batch alike. Shapes: B items, T tokens, D width, L layers.
"""

from __future__ import annotations

import numbers
from collections import Counter
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from zoo.checkpointing import ActivationCheckpointing
from zoo.errors import ConfigError, InputError
from zoo.numerics import non_finite_features
from zoo.pooling import check_pool, is_single_layer, layer_indices
from zoo.processing import first_non_finite
from zoo.saving import Checkpointable

if TYPE_CHECKING:
    from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

    from zoo.encoder import Encoder

#: None (last layer), an int, or "weighted" (learned softmax-weighted sum of all layers)
HeadLayer = Union[None, int, str]
#: label names in class index order, or transformers' id2label ({0: "cat"}) or label2id ({"cat": 0})
LabelNames = Union[Sequence[str], Mapping[int, str], Mapping[str, int]]
#: the pools only graph encoders have (their readouts besides the mean)
GRAPH_READOUTS = ("sum", "max")
#: a token label that takes no part in the loss (transformers' and torch's convention)
IGNORE_INDEX = -100
#: the batch key in which `TokenCollator` gives each example's count of token labels, so that the
#: model can tell a row shorter than its tokens from the batch's padding (no "label" in the name:
#: transformers' Trainer takes every forward argument named so for a label)
TOKEN_COUNTS = "target_counts"


class LayerWeights(nn.Module):
    """Learned softmax weights over the hidden states (SUPERB / s3prl's Featurizer): all L+1,
    or those of the last layer's width where widths differ (a graph encoder's input features)."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        self.indices = [index for index, width in enumerate(widths) if width == widths[-1]]
        self.logits = nn.Parameter(torch.zeros(len(self.indices)))

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
        weights = torch.softmax(self.logits, dim=0)
        return sum(weight * hidden_states[index] for weight, index in zip(weights, self.indices))

    def mix(self, stacked: torch.Tensor) -> torch.Tensor:
        """(..., K, D) rows of the K layers in `indices` -> (..., D), the same weighted sum."""
        return (torch.softmax(self.logits, dim=0).unsqueeze(-1) * stacked).sum(-2)


class Collator:
    """A head's `collate`: examples {"input": raw item, "label": target} -> a batch, a
    `data_collator` for `Trainer` or a DataLoader's `collate_fn`. It holds the processor and the
    label names, not the model, so that it pickles into a DataLoader's spawn workers (the
    default on macOS and Windows), which HuBERT's, MERT's and BEATs' weight-norm convolutions
    cannot. This one reads regression targets; the subclasses read their heads' labels.
    """

    #: the dtype `label_tensor` gives: float targets, or class indices for the cross-entropy
    label_dtype = torch.float32
    #: what labels this head takes, for the advice of a label it cannot read
    takes = "numbers (a regressor's targets)"
    #: the call that makes this kind of head with label names
    maker = "zoo.for_classification(encoder, labels=[...])"

    def __init__(self, processor: Any, num_outputs: int, labels: Sequence[str] = (), training: bool = False) -> None:
        self.processor, self.num_outputs, self.labels = processor, num_outputs, list(labels)
        self.training = training

    def __call__(self, examples: Sequence[dict[str, Any]], **prepare_kwargs: Any) -> dict[str, torch.Tensor]:
        if not examples:
            raise InputError("collate([]): a batch needs at least one example {'input': ..., 'label': ...}")
        missing = sorted({key for example in examples for key in ("input", "label") if key not in example})
        if missing:
            raise InputError(f"examples need the keys 'input' and 'label'; one lacks {missing} (map a dataset's "
                             "columns to them, e.g. dataset.rename_column('audio', 'input'); with transformers' "
                             "Trainer also pass TrainingArguments(remove_unused_columns=False), or it drops the "
                             "'input' column, which forward() does not name)")
        inputs = [example["input"] for example in examples]
        batch = (self.processor.training_batch if self.training else self.processor)(inputs, **prepare_kwargs)
        batch["labels"] = self.label_tensor([example["label"] for example in examples])
        return batch

    def label_tensor(self, labels: Sequence[Any]) -> torch.Tensor:
        """The examples' labels as one tensor of `label_dtype`; a fraction is refused where class
        indices are wanted rather than cut to the class below."""
        try:
            values = torch.tensor(labels)
        except (TypeError, ValueError, RuntimeError) as err:  # torch raises RuntimeError for None
            raise InputError(f"labels such as {labels[0]!r} are not numbers ({err}); give {self.takes}") from err
        if self.label_dtype == torch.long and values.is_floating_point():
            fractions = values[values != values.round()]
            if len(fractions):
                raise InputError(f"label {float(fractions[0]):g} is not a class index; classification labels are "
                                 "whole numbers (for soft targets use zoo.for_tagging)")
        return values.to(self.label_dtype)

    def label_index(self, name: str) -> int:
        """The output of a label name, so that examples can carry names rather than indices."""
        if name not in self.labels:
            raise InputError(f"label {name!r} is not one of the head's {len(self.labels)} labels "
                             f"({first_labels(self.labels)}); "
                             f"name them when making the head: {self.maker}")
        return self.labels.index(name)


def check_label_counts(counts: Optional[torch.Tensor], mask: torch.Tensor) -> None:
    """Refuse an example of `collate` whose labels (`counts` of them, `TOKEN_COUNTS`) are fewer
    than its tokens: its last tokens were read as padding and left out of the loss (Cora's first
    100 labels for its 2,708 nodes, or frame labels at another rate, trained without a word).
    Labels padded with -100 by the caller (transformers' token collators) come without counts,
    and are taken as they are."""
    if counts is None:
        return
    tokens = mask.sum(dim=1)
    short = (counts.to(tokens.device) < tokens).nonzero()
    if len(short):
        item = int(short[0])
        raise InputError(f"item {item} of the batch has {int(counts[item])} token labels but {int(tokens[item])} "
                         f"tokens; give one label per token of embed(pool='none'), {IGNORE_INDEX} for a token "
                         "without one")


class ClassificationCollator(Collator):
    """A classifier's labels: class indices or label names."""

    label_dtype = torch.long
    takes = "class indices or label names, e.g. names.index(label) or a datasets ClassLabel"

    def label_tensor(self, labels: Sequence[Any]) -> torch.Tensor:
        """Class indices, or label names turned into them."""
        if any(isinstance(label, str) for label in labels):
            labels = [self.label_index(label) if isinstance(label, str) else label for label in labels]
        return super().label_tensor(labels)


class TaggingCollator(Collator):
    """A tagger's labels: multi-hot rows or lists of label names."""

    takes = "multi-hot rows, or each example's list of label names"
    maker = "zoo.for_tagging(encoder, labels=[...])"

    def label_tensor(self, labels: Sequence[Any]) -> torch.Tensor:
        """Multi-hot rows, or each example's list of label names turned into one."""
        if not any(is_name_list(label) for label in labels):
            return super().label_tensor(labels)
        rows = torch.zeros(len(labels), self.num_outputs)
        for row, names in zip(rows, labels):
            if not is_name_list(names):
                raise InputError(f"tagging labels mix name lists with {names!r}; give every example a list of "
                                 "label names (possibly empty) or every example a multi-hot row")
            row[[self.label_index(name) for name in names]] = 1.0
        return rows


class TokenCollator(Collator):
    """A token classifier's labels: one per token, as indices or names, -100 for none."""

    label_dtype = torch.long
    takes = "one class index or label name per token, -100 for a token without one"
    maker = "zoo.for_token_classification(encoder, labels=[...])"

    def __call__(self, examples: Sequence[dict[str, Any]], **prepare_kwargs: Any) -> dict[str, torch.Tensor]:
        """The batch, with each example's count of token labels (`TOKEN_COUNTS`)."""
        batch = super().__call__(examples, **prepare_kwargs)
        batch[TOKEN_COUNTS] = torch.tensor([len(example["label"]) for example in examples])  # checked 1-d above
        return batch

    def label_tensor(self, labels: Sequence[Any]) -> torch.Tensor:
        """Each example's token labels (indices, names or -100) as one (B, T) tensor, padded with -100."""
        row_tensor = super().label_tensor  # checks and casts one example's labels
        rows = [row_tensor(self.label_values(label)) for label in labels]
        return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=IGNORE_INDEX)

    def label_values(self, label: Any) -> list[Any]:
        """One example's token labels as a list, names turned into class indices."""
        if isinstance(label, (str, numbers.Number)) or getattr(label, "ndim", 1) != 1:
            raise InputError(f"a token classifier's example label is one label per token (a list or 1-d array, "
                             f"{IGNORE_INDEX} for none), got {label!r:.80}")
        values = label.tolist() if hasattr(label, "tolist") else list(label)
        return [self.label_index(value) if isinstance(value, str) else value for value in values]


class EncoderWithHead(ActivationCheckpointing, Checkpointable, nn.Module):
    """Shared part of the classification and regression heads."""

    task = ""
    #: the pools a head of this kind reads its features from
    head_pools: tuple[str, ...] = ("mean", "cls", *GRAPH_READOUTS)
    #: the Hub's pipeline tag of a head of this kind, by its encoder's modality
    pipeline_tags: dict[str, str] = {"speech": "audio-classification", "audio": "audio-classification",
                                     "vision": "image-classification", "tabular": "tabular-classification",
                                     "graph": "graph-ml"}
    #: tells transformers' Trainer that the loss is a plain mean (no num_items_in_batch)
    accepts_loss_kwargs = False
    #: how `collate` and `forward` read labels
    collator_class: type[Collator] = Collator
    #: the fewest outputs the head can learn with (a softmax needs two classes)
    min_outputs = 1

    def __init__(self, encoder: Encoder, num_outputs: int, pool: Optional[str] = None, layer: HeadLayer = None,
                 freeze: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if isinstance(encoder, EncoderWithHead):
            raise ConfigError(f"the model given is already a {encoder.task} model ({type(encoder).__name__}); put the "
                              f"new {self.task} head on its encoder: `model.encoder`")
        if not isinstance(encoder, nn.Module) or not hasattr(encoder, "pools"):
            load = f"zoo.load({encoder!r})" if isinstance(encoder, str) else "zoo.load(NAME)"
            raise ConfigError(f"a {self.task} head goes on an encoder, not on {encoder!r:.80} "
                              f"({type(encoder).__name__}); pass the encoder {load} gives")
        if pool is None:
            pool = default_pool(encoder)
        if pool not in self.head_pools:
            raise ConfigError(f"a {self.task} head's pool={pool!r}; use one of {self.head_pools}")
        if pool in GRAPH_READOUTS and pool not in encoder.pools:
            takes = " or ".join(repr(name) for name in self.head_pools if name in encoder.pools)
            raise ConfigError(f"pool={pool!r} is a graph readout and {type(encoder).__name__} is a "
                              f"{encoder.modality} encoder; use pool={takes}")
        check_pool(pool, encoder.pools, type(encoder).__name__)
        if not (isinstance(layer, str) and layer == "weighted"):
            layer_indices(layer, encoder.num_layers)  # validates the index
            if not is_single_layer(layer):
                raise ConfigError(f"head layer={layer!r}; use one layer (an int), None (the last) or 'weighted'")
            layer = None if layer is None else int(layer)  # a numpy int would not go into config.json
        if isinstance(num_outputs, bool) or not isinstance(num_outputs, numbers.Integral) or num_outputs < 1:
            raise ConfigError(f"a head needs a whole number of outputs, at least one; got {num_outputs!r}")
        if num_outputs < self.min_outputs:  # a softmax over one class: always 1.0, a loss of 0, nothing trains
            raise ConfigError(f"a {self.task} head needs at least {self.min_outputs} classes, got {num_outputs}: one "
                              "class is always predicted and nothing trains; for a number use zoo.for_regression, for "
                              "a yes/no label zoo.for_tagging")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout={dropout!r}; use a probability in [0, 1)")
        num_outputs = int(num_outputs)
        self.encoder = encoder
        self.processor = encoder.processor
        self.pool, self.layer = pool, layer
        self.num_outputs, self.dropout_rate = num_outputs, dropout
        self.layer_weights = LayerWeights(encoder.layer_widths) if layer == "weighted" else None
        if self.layer_weights is not None and len(self.layer_weights.indices) < 2:  # a last-layer head, said not
            raise ConfigError(f"layer='weighted' mixes the hidden states of the last one's width, and "
                              f"{type(encoder).__name__}'s widths are {encoder.layer_widths}: only the last is; "
                              "use layer=None (the last layer), or an int")
        self.dropout = nn.Dropout(dropout)
        width = encoder.embed_dim if layer in (None, "weighted") else encoder.layer_widths[layer]
        self.head = nn.Linear(width, num_outputs)
        self.freeze = freeze  # and, as a new module trains, the encoder's mode: training unless frozen

    @property
    def freeze(self) -> bool:
        """Whether the encoder is frozen: none of its parameters requires a gradient. It follows
        the parameters, so that unfreezing as in transformers and timm, `requires_grad_(True)`,
        trains the encoder (and a saved config says so); a conv front end fixed by
        `freeze_feature_encoder` leaves the rest training, so the encoder is not frozen."""
        return not any(parameter.requires_grad for parameter in self.encoder.parameters())

    @freeze.setter
    def freeze(self, freeze: bool) -> None:
        """Freeze or unfreeze the whole encoder, but for the parts its `forward` never runs,
        which would only be decayed and counted as trained. An unfrozen encoder takes the head's
        mode: a new head trains as a whole, though `zoo.load` gave its encoder in eval mode."""
        self.encoder.requires_grad_(not freeze)
        for name, parameter in self.encoder.named_parameters():
            if name.startswith(self.encoder.unused_in_forward):
                parameter.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "EncoderWithHead":
        super().train(mode)
        if self.freeze:
            self.encoder.eval()  # a frozen encoder keeps its dropout off
        return self

    @property
    def device(self) -> torch.device:
        """The encoder's device, where a batch goes (as `encoder.device`)."""
        return self.encoder.device

    @property
    def dtype(self) -> torch.dtype:
        """The encoder's precision; the head's own layers stay float32 on a half-precision encoder."""
        return self.encoder.dtype

    def card_usage(self, inputs: str, token: str) -> str:
        """The `predict` line of a default model card, for `inputs` written as Python (a
        modality's `token` names what a per-token head labels)."""
        return f"model.predict({inputs}, top_k=3)  # [[(label, probability), ...]] per input"

    def freeze_feature_encoder(self) -> None:
        """transformers' audio heads' switch: the encoder's conv front end stops training
        (HuBERT's and MERT's conv feature encoder, BEATs' patch embedding), the rest of it
        trains as `freeze` says."""
        freeze = getattr(self.encoder, "freeze_feature_encoder", None)
        if freeze is None:
            raise ConfigError(f"{self.encoder.family} encoders have no conv feature encoder to freeze; "
                              "freeze=True freezes the whole encoder")
        freeze()

    def encoder_output(self, **batch: torch.Tensor) -> Any:
        """The encoder's output for a batch, with every hidden state where a layer is chosen;
        without gradients when the encoder is frozen."""
        if "output_hidden_states" in batch:  # was "got multiple values for keyword argument" from the encoder
            raise ConfigError("a head's forward gives its logits (and loss); for the hidden states call its encoder: "
                              "model.encoder(**batch, output_hidden_states=True)")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            return self.encoder(**batch, output_hidden_states=self.layer is not None)

    def tokens(self, **batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) tokens of the chosen layer (or learned mix of layers) and their (B, T) mask."""
        output = self.encoder_output(**batch)
        if self.layer is None:
            tokens = output.last_hidden_state
        elif self.layer == "weighted":
            tokens = self.layer_weights(output.hidden_states)
        else:
            tokens = output.hidden_states[self.layer]
        return tokens, output.mask

    def features(self, **batch: torch.Tensor) -> torch.Tensor:
        """(B, D) features pooled as the encoder's `embed` pools them, of the chosen layer, or the
        learned mix of every layer's pooled features: pooled first, as `logits` reads `embed`
        rows of each layer, which for a max readout differs from pooling the mix."""
        if self.layer_weights is None:
            return self.encoder.pool_tokens(*self.tokens(**batch), self.pool)
        output = self.encoder_output(**batch)
        return self.layer_weights([self.encoder.pool_tokens(state, output.mask, self.pool)
                                   for state in output.hidden_states])

    def forward(self, labels: Optional[torch.Tensor] = None, **batch: torch.Tensor) -> SequenceClassifierOutput:
        """Logits (B, num_outputs) from the processor's tensors of one batch, and with `labels`
        (B,) or (B, num_outputs) their loss, as transformers' heads give them, so that its Trainer
        trains a zoo head as it trains its own."""
        from transformers.modeling_outputs import SequenceClassifierOutput

        features = self.features(**batch)
        logits = self.head(self.dropout(features.to(self.head.weight.dtype)))
        loss = None
        if labels is not None:
            labels = self.labels_as_tensor(labels)
            self.check_labels(labels, len(logits))
            loss = self.loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def logits(self, inputs: Any, batch_size: Optional[int] = None, progress: bool = False,
               **prepare_kwargs: Any) -> torch.Tensor:
        """Raw inputs -> (N, num_outputs) logits, one row per item, in eval mode.

        The head reads the encoder's `embed` rows of its layer and pool, so an item scores the
        same alone or in any batch, and long inputs are windowed as `embed` windows them.
        `batch_size` None is the encoder's own (`embed_batch_size`: 8 recordings or images,
        32 graphs, 1,024 table rows)."""
        return self.head_scores(self.embedded(inputs, batch_size, progress, **prepare_kwargs))

    def embedded(self, inputs: Any, batch_size: Optional[int], progress: bool, **prepare_kwargs: Any) -> Any:
        """The encoder's `embed` output for the head's pool and layer (every mixed layer, for
        `layer="weighted"`), `batch_size` pieces at a time (None: the encoder's own)."""
        return self.encoder.embed(inputs, layer=self.feature_layer, pool=self.pool,
                                  batch_size=self.encoder.embed_batch_size if batch_size is None else batch_size,
                                  progress=progress, **prepare_kwargs)

    @property
    def feature_layer(self) -> Any:
        """The `layer` of the encoder's `embed` the head reads: its own, or every layer it mixes."""
        return self.layer_weights.indices if self.layer_weights is not None else self.layer

    def head_scores(self, features: torch.Tensor) -> torch.Tensor:
        """Features (..., D), or (..., K, D) layers to mix, -> (..., num_outputs) float logits on the CPU."""
        features = features.to(self.head.weight.device, self.head.weight.dtype)
        if self.layer_weights is not None:
            features = self.layer_weights.mix(features)
        scores = self.head(features).float().cpu()
        if first_non_finite(scores) is not None:  # from finite features (embed checks them): the head's weights
            raise non_finite_features(self)
        return scores

    def check_labels(self, labels: torch.Tensor, batch_size: int) -> None:
        """Refuse labels that do not fit the batch or the head, naming them: torch's own errors
        (a CUDA device-side assert for a class out of range) do not say which value is wrong."""
        if labels.dim() == 0 or len(labels) != batch_size:
            raise InputError(f"labels of shape {tuple(labels.shape)} for a batch of {batch_size} inputs; "
                             "give one label per input")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch's logits against its checked labels (each task its own)."""
        raise NotImplementedError

    @property
    def collate(self) -> Collator:
        """A `data_collator` for `Trainer`, or a DataLoader's `collate_fn`: examples {"input": raw
        item, "label": target} -> batch. It pickles without the model (see `Collator`)."""
        return self.collator_class(self.processor, self.num_outputs, getattr(self, "labels", ()))

    @property
    def training_collate(self) -> Collator:
        """`collate` for training batches (`zoo finetune`'s): a random window of each recording
        longer than the processor's `chunk_seconds` (`AudioProcessor.random_window`), the length
        of what `embed`, and so `predict`, sees of it at once; other inputs whole."""
        return self.collator_class(self.processor, self.num_outputs, getattr(self, "labels", ()), training=True)

    def labels_as_tensor(self, labels: Any) -> torch.Tensor:
        """`forward`'s labels as a tensor: a tensor as given, anything else (a list, a numpy
        array, label names) as `collate` reads the examples' labels."""
        if torch.is_tensor(labels):
            return labels
        if isinstance(labels, (str, bytes, numbers.Number)) or getattr(labels, "ndim", 1) == 0:
            return self.collate.label_tensor([labels])[0]  # one label: refused by shape, naming the batch size
        return self.collate.label_tensor(labels)

    def head_config(self) -> dict[str, Any]:
        """The head's settings, saved under config.json's "head" so that `zoo.load` builds it again."""
        return {"task": self.task, "num_outputs": self.num_outputs, "pool": self.pool, "layer": self.layer,
                "freeze": self.freeze, "dropout": self.dropout_rate}

    def config_dict_to_save(self) -> dict[str, Any]:
        """The encoder's config with the head's settings (`head_config`) beside it."""
        return {**self.encoder.config.to_dict(), "head": self.head_config()}


class LabelledHead(EncoderWithHead):
    """A head whose outputs are named classes or tags: `predict` gives the top-k names with
    their probabilities (`probabilities` says how logits become them)."""

    def __init__(self, encoder: Encoder, num_outputs: int, labels: Optional[LabelNames] = None,
                 **kwargs: Any) -> None:
        labels = label_list(labels)
        super().__init__(encoder, num_outputs, **kwargs)
        if labels is not None and len(labels) != num_outputs:
            raise ConfigError(f"{len(labels)} label names for {num_outputs} outputs; give one name per output")
        repeated = sorted(name for name, count in Counter(map(str, labels or ())).items() if count > 1)
        if repeated:
            raise ConfigError(f"label names {repeated} are given more than once; each output needs its own name, "
                              "or predictions could not tell those outputs apart")
        self.labels = [str(label) for label in labels] if labels is not None else [str(i) for i in range(num_outputs)]

    def probabilities(self, inputs: Any, **kwargs: Any) -> torch.Tensor:
        """Raw inputs -> (N, num_outputs) probabilities, one row per item (`logits` takes the kwargs)."""
        return self.to_probabilities(self.logits(inputs, **kwargs))

    def to_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (..., num_outputs) -> the probabilities `predict` ranks labels by: a softmax over
        the classes (a tagger's labels are independent and override it)."""
        return torch.softmax(logits, dim=-1)

    @property
    def num_labels(self) -> int:
        return self.num_outputs

    def predict(self, inputs: Any, top_k: int = 5, **kwargs: Any) -> list[list[tuple[str, float]]]:
        """Raw inputs -> for each item, its `top_k` (label name, probability), most likely first
        (all labels when there are fewer)."""
        check_top_k(top_k)
        return self.top_labels(self.probabilities(inputs, **kwargs), top_k)

    def top_labels(self, probabilities: torch.Tensor, top_k: int) -> list[list[tuple[str, float]]]:
        """(N, num_outputs) probabilities -> for each row, its `top_k` (label name, probability)."""
        scores, indices = probabilities.topk(min(top_k, self.num_outputs), dim=-1)
        return [[(self.labels[i], float(p)) for p, i in zip(row_scores, row_indices)]
                for row_scores, row_indices in zip(scores.tolist(), indices.tolist())]

    def head_config(self) -> dict[str, Any]:
        return {**super().head_config(), "labels": self.labels}


class EncoderForClassification(LabelledHead):
    """Single-label classification: cross-entropy over `num_outputs` classes, named by `labels`."""

    task = "classification"
    collator_class = ClassificationCollator
    min_outputs = 2

    def check_labels(self, labels: torch.Tensor, batch_size: int) -> None:
        """Class indices (B,) in [0, num_labels)."""
        super().check_labels(labels, batch_size)
        if labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
            raise InputError(f"classification labels are class indices of shape ({batch_size},), got "
                             f"{labels.dtype} of shape {tuple(labels.shape)}; for soft or multi-label targets "
                             "use zoo.for_tagging")
        outside = labels[(labels < 0) | (labels >= self.num_labels)]
        if len(outside):
            raise InputError(f"label {int(outside[0])} is out of range for {self.num_labels} classes; "
                             f"labels are 0 .. {self.num_labels - 1}")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, which takes int64 class indices only: int32 ones (numpy's default on
        Windows before NumPy 2) are cast."""
        return nn.functional.cross_entropy(logits, labels.to(logits.device, torch.long))


class EncoderForRegression(EncoderWithHead):
    """Regression: mean squared error on `num_outputs` targets."""

    task = "regression"
    pipeline_tags = {**EncoderWithHead.pipeline_tags, "tabular": "tabular-regression"}

    def card_usage(self, inputs: str, token: str) -> str:
        return f"model.predict({inputs})  # (N, targets)"

    def check_labels(self, labels: torch.Tensor, batch_size: int) -> None:
        """Targets (B, num_outputs), or (B,) for one output."""
        super().check_labels(labels, batch_size)
        shapes = [(batch_size, self.num_outputs)] + ([(batch_size,)] if self.num_outputs == 1 else [])
        if tuple(labels.shape) not in shapes:
            raise InputError(f"regression labels of shape {tuple(labels.shape)} for {self.num_outputs} "
                             f"target(s); pass {' or '.join(map(str, shapes))}")
        if not torch.isfinite(labels).all():
            raise InputError(f"a regression target is {float(labels[~torch.isfinite(labels)][0])}; drop the "
                             "examples without a finite target, or fill them in")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean squared error; a (B,) target of a one-number head is compared with its (B, 1) logits."""
        labels = labels.to(logits.device, logits.dtype)
        return nn.functional.mse_loss(logits.view_as(labels) if labels.dim() == 1 else logits, labels)

    def predict(self, inputs: Any, top_k: Optional[int] = None, **kwargs: Any) -> torch.Tensor:
        """Raw inputs -> (N, num_outputs) predicted targets, one row per item (`logits` takes the
        kwargs). `top_k` is refused as `zoo predict --top-k` refuses it: it went on to the
        processor, which named it an unknown input option."""
        if top_k is not None:
            raise ConfigError(f"top_k={top_k!r} asks for labels; this regressor predicts values, one row per "
                              "item: drop top_k")
        return self.logits(inputs, **kwargs)


class EncoderForTagging(LabelledHead):
    """Multi-label tagging (e.g. AudioSet): one sigmoid per label, binary cross-entropy.

    `labels` names the outputs in order; `predict()` returns the top-k names with their
    probabilities. The logits are those of the pooled features, which for a linear head
    equals averaging per-token logits (how BEATs' fine-tuned models score a clip).
    """

    task = "tagging"
    collator_class = TaggingCollator

    def check_labels(self, labels: torch.Tensor, batch_size: int) -> None:
        """Multi-hot (or soft) targets (B, num_outputs) in [0, 1]."""
        super().check_labels(labels, batch_size)
        if labels.dim() != 2 or labels.shape[1] != self.num_outputs:
            raise InputError(f"tagging labels are multi-hot rows of shape ({batch_size}, {self.num_outputs}), "
                             f"got shape {tuple(labels.shape)}")
        if len(labels) and not (labels.min() >= 0 and labels.max() <= 1):
            raise InputError(f"tagging labels must lie in [0, 1], got values in [{float(labels.min()):g}, "
                             f"{float(labels.max()):g}]")

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of each tag, averaged."""
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.device, logits.dtype))

    def to_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Label probabilities: a sigmoid each, labels independent."""
        return torch.sigmoid(logits)


class EncoderForTokenClassification(LabelledHead):
    """A class for every token: each node of a graph (node classification, e.g. Cora's papers),
    frame of a recording or patch of an image, the tokens `embed(pool="none")` gives (an image's
    cls token is not one of them).

    Labels are (B, T) class indices (or, through `collate`, names), `IGNORE_INDEX` (-100, as in
    transformers) for tokens without one, such as Cora's nodes outside the training split; the
    loss is the mean cross-entropy over the labelled tokens (0 where a batch has none).
    """

    task = "token-classification"
    head_pools = ("none",)
    min_outputs = 2
    collator_class = TokenCollator
    pipeline_tags = {**dict.fromkeys(EncoderWithHead.pipeline_tags, "token-classification"), "graph": "graph-ml"}

    def card_usage(self, inputs: str, token: str) -> str:
        return f"model.predict({inputs})  # per input, per {token}: [(label, probability)]"

    def __init__(self, encoder: Encoder, num_outputs: int, pool: str = "none", **kwargs: Any) -> None:
        if encoder.modality == "tabular":
            raise ConfigError("a table's tokens are its columns, which have no labels of their own; classify rows "
                              "with zoo.for_classification")
        super().__init__(encoder, num_outputs, pool=pool, **kwargs)
        self.leading_tokens = encoder.leading_tokens  # a ViT's cls token gets no class

    @property
    def training_collate(self) -> Collator:
        """`collate`: an example's labels name each of its tokens, so training batches hold whole inputs."""
        return self.collate

    def tokens(self, **batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, mask = super().tokens(**batch)
        return tokens[:, self.leading_tokens:], mask[:, self.leading_tokens:]

    def forward(self, labels: Optional[torch.Tensor] = None, target_counts: Optional[torch.Tensor] = None,
                **batch: torch.Tensor) -> TokenClassifierOutput:
        """Logits (B, T, num_labels), and with `labels` (B, T') their loss; `target_counts` (B,),
        which `collate` gives, are the labels each example came with (see `check_label_counts`)."""
        from transformers.modeling_outputs import TokenClassifierOutput

        tokens, mask = self.tokens(**batch)
        logits = self.head(self.dropout(tokens.to(self.head.weight.dtype)))
        if labels is None:
            return TokenClassifierOutput(loss=None, logits=logits)
        check_label_counts(target_counts, mask)
        return TokenClassifierOutput(loss=self.loss(logits, self.aligned_labels(self.labels_as_tensor(labels), mask)),
                                     logits=logits)

    def aligned_labels(self, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T') labels -> (B, T) on the tokens' device, padded with `IGNORE_INDEX`; a label on a
        token the item does not have, or outside the classes, is refused with its position."""
        batch_size, length = mask.shape
        if labels.dim() != 2 or len(labels) != batch_size or labels.is_floating_point() or labels.dtype == torch.bool:
            raise InputError(f"token labels are class indices of shape ({batch_size}, tokens), {IGNORE_INDEX} where "
                             f"a token has none; got {labels.dtype} of shape {tuple(labels.shape)}")
        labels = labels.to(mask.device, torch.long)  # the cross-entropy takes int64 only
        width = max(length, labels.shape[1])
        labels = nn.functional.pad(labels, (0, width - labels.shape[1]), value=IGNORE_INDEX)
        labelled = labels != IGNORE_INDEX
        stray = (labelled & ~nn.functional.pad(mask, (0, width - length), value=False)).nonzero()
        if len(stray):
            item, token = stray[0].tolist()
            raise InputError(f"item {item} of the batch has a label for token {token} but only {int(mask[item].sum())} "
                             f"tokens; give one label per token of embed(pool='none'), {IGNORE_INDEX} for none")
        outside = labels[labelled & ((labels < 0) | (labels >= self.num_labels))]
        if len(outside):
            raise InputError(f"label {int(outside[0])} is out of range for {self.num_labels} classes; labels are "
                             f"0 .. {self.num_labels - 1}, or {IGNORE_INDEX} for a token without one")
        return labels[:, :length]

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy averaged over the labelled tokens (not those marked IGNORE_INDEX), zero
        where a batch has none."""
        labelled = labels != IGNORE_INDEX
        total = nn.functional.cross_entropy(logits[labelled], labels[labelled], reduction="sum")
        return total / labelled.sum().clamp(min=1)

    @torch.no_grad()
    def logits(self, inputs: Any, batch_size: Optional[int] = None, progress: bool = False,
               **prepare_kwargs: Any) -> torch.Tensor | list[torch.Tensor]:
        """Raw inputs -> a list of (T_i, num_labels) logits, one per item (for one graph `Data`,
        its (N, num_labels)), from the encoder's `embed(pool="none")` tokens."""
        tokens = self.embedded(inputs, batch_size, progress, **prepare_kwargs)
        single = torch.is_tensor(tokens)
        rows = [self.token_logits(item) for item in ([tokens] if single else tokens)]
        return rows[0] if single else rows

    def token_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """One item's (T, D) tokens, or its (K, T, D) layers to mix, -> (T, num_labels) logits
        (`head_scores` takes a token's layers together, (T, K, D))."""
        if self.layer_weights is not None:
            tokens = tokens.transpose(0, 1)
        return self.head_scores(tokens)

    def probabilities(self, inputs: Any, **kwargs: Any) -> torch.Tensor | list[torch.Tensor]:
        """Raw inputs -> (T_i, num_labels) class probabilities per item, shaped as `logits`."""
        logits = self.logits(inputs, **kwargs)
        return self.to_probabilities(logits) if torch.is_tensor(logits) else list(map(self.to_probabilities, logits))

    def predict(self, inputs: Any, top_k: int = 1, **kwargs: Any) -> list:
        """Raw inputs -> for each item, for each token, its `top_k` (label name, probability); for
        one graph `Data`, the list of its nodes'."""
        check_top_k(top_k)
        probabilities = self.probabilities(inputs, **kwargs)
        if torch.is_tensor(probabilities):
            return self.top_labels(probabilities, top_k)
        return [self.top_labels(item, top_k) for item in probabilities]


def check_top_k(top_k: Any) -> None:
    """Refuse a `top_k` that is not a whole number of at least one (numpy's integers are whole numbers)."""
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral):
        raise ConfigError(f"top_k={top_k!r}; give a whole number of labels (1 or more)")
    if top_k < 1:
        raise ConfigError(f"top_k={top_k!r}; ask for at least one label")


def first_labels(labels: Sequence[str], shown: int = 10) -> str:
    """The first `shown` label names, for messages and cards: "zero, one, ..."."""
    return ", ".join(labels[:shown]) + (", ..." if len(labels) > shown else "")


def is_name_list(value: Any) -> bool:
    """A tagging example's labels given as names (an empty list: no tag)."""
    return isinstance(value, (list, tuple, set)) and all(isinstance(item, str) for item in value)


HEADS = {cls.task: cls for cls in (EncoderForClassification, EncoderForRegression, EncoderForTagging,
                                   EncoderForTokenClassification)}


def label_list(labels: Any) -> Any:
    """Label names as a checked list (None, or for_tagging's count, as they are). A dict is read as
    transformers' id2label ({0: "cat"}) or label2id ({"cat": 0}): its keys were taken for the
    names, so label2id trained class 0 under the name of whichever key came first. A set is
    refused: its order changes from run to run (PYTHONHASHSEED)."""
    if labels is None or isinstance(labels, numbers.Integral):
        return labels
    if isinstance(labels, (set, frozenset)):
        raise ConfigError(f"labels={labels!r} is a set, whose order changes from run to run; give a list in class "
                          "index order, e.g. labels=sorted(names)")
    if isinstance(labels, Mapping):
        labels = indexed_names(labels)
    check_label_list(labels)
    return list(labels)


def indexed_names(mapping: Mapping[Any, Any]) -> list[Any]:
    """The names of an id2label or label2id dict, in index order."""
    indices = range(len(mapping))
    if all(map(is_index, mapping)) and set(mapping) == set(indices):
        return [mapping[index] for index in indices]
    if all(map(is_index, mapping.values())) and set(mapping.values()) == set(indices):
        names = {index: name for name, index in mapping.items()}
        return [names[index] for index in indices]
    raise ConfigError(f"labels={dict(mapping)!r}: a dict is read as id2label ({{0: 'cat', 1: 'dog'}}) or label2id "
                      f"({{'cat': 0, 'dog': 1}}), with the class indices 0 to {len(mapping) - 1}; or give a list of "
                      "names in index order")


def is_index(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_label_list(labels: Any) -> None:
    """Label names come as a list: a string would be taken for one name per character. An integer
    name at another position is refused: an integer label is a class index, so with labels=[1, 0]
    the label 1 trained the class named "0", without a word."""
    if isinstance(labels, (str, bytes)):
        raise ConfigError(f"labels={labels!r} is a string; give a list of names, e.g. labels=[{labels!r}] or "
                          f"labels={labels!r}.split(',')")
    for position, name in enumerate(labels if isinstance(labels, Sequence) else ()):
        if isinstance(name, numbers.Integral) and not isinstance(name, bool) and name != position:
            raise ConfigError(f"labels={list(labels)!r} names class {position} {name!r}, but an integer label is a "
                              f"class index: an example labelled {name} would train class {name}, not the one named "
                              f"{name!r}; give the names in index order (labels=sorted(...)), or as text "
                              "(labels=[str(name) for name in ...]) with the examples labelled by those texts")


def label_count(num_labels: Optional[int], labels: Optional[Sequence[str]], maker: str) -> int:
    """`num_labels`, or by default the number of label names."""
    if num_labels is None:
        if labels is None:
            raise ConfigError(f"{maker} needs num_labels or labels (the class names)")
        num_labels = len(labels)
    return num_labels


def head_from_config(encoder: Encoder, config: dict[str, Any]) -> EncoderWithHead:
    """The head a saved config.json's "head" entry (`head_config()`) describes, around `encoder`;
    its weights are loaded afterwards."""
    config = dict(config)
    task = config.pop("task")
    if task not in HEADS:
        raise ConfigError(f"head task {task!r} is not one of {sorted(HEADS)}")
    return HEADS[task](encoder, **config)


def default_pool(encoder: Encoder) -> str:
    """What a head pools by when not told: a graph checkpoint's readout (its pretraining's and
    probe's; MUTAG's sum scored 85.1 % against the mean's 80.8 %; a node-level checkpoint's, whose
    `embed` gives nodes, is the mean), else the mean of the tokens."""
    return getattr(encoder, "readout_pool", "mean")


def for_classification(encoder: Encoder, num_labels: Optional[int] = None, pool: Optional[str] = None,
                       layer: HeadLayer = None, freeze: bool = True, dropout: float = 0.0,
                       labels: Optional[LabelNames] = None) -> EncoderForClassification:
    """A classifier on top of `encoder`.

    Args:
        encoder: what `zoo.load` gives (shared, not copied: the head trains it in place).
        num_labels: number of classes (default: the number of `labels`).
        pool: "mean" over valid tokens, "cls" (encoders with a cls token), or a graph encoder's
            "sum" or "max" readout (default: a graph checkpoint's own readout, the mean for a
            node-level one, whose `embed` gives nodes; else "mean").
        layer: None (last), an int, or "weighted" (learned weighted sum of all layers).
        freeze: keep the encoder's weights fixed (the default: a linear probe) or fine-tune them
            too (`zoo finetune`'s default, `--mode full`). Either sets every encoder parameter
            (the encoder is shared, not copied): to train only some blocks, freeze the others
            after making the head.
        dropout: the probability of dropping a feature before the head, in training.
        labels: the class names, in index order, that `predict` returns (default: "0", "1", ...),
            or transformers' id2label ({0: "cat"}) or label2id ({"cat": 0}) dict.
    """
    labels = label_list(labels)
    num_labels = label_count(num_labels, labels, "for_classification")
    return EncoderForClassification(encoder, num_labels, labels=labels, pool=pool, layer=layer, freeze=freeze,
                                    dropout=dropout)


def for_regression(encoder: Encoder, num_targets: int = 1, pool: Optional[str] = None, layer: HeadLayer = None,
                   freeze: bool = True, dropout: float = 0.0) -> EncoderForRegression:
    """A regressor of `num_targets` numbers on top of `encoder` (mean squared error on the targets
    as given); the other arguments as `for_classification`'s."""
    return EncoderForRegression(encoder, num_targets, pool=pool, layer=layer, freeze=freeze, dropout=dropout)


def for_tagging(encoder: Encoder, labels: LabelNames | int | np.integer, pool: Optional[str] = None,
                layer: HeadLayer = None, freeze: bool = True, dropout: float = 0.0) -> EncoderForTagging:
    """A multi-label tagger on top of `encoder` (a sigmoid per tag): `labels` is a list of names (or
    an id2label or label2id dict), or the number of tags; the other arguments as `for_classification`'s."""
    labels = label_list(labels)
    whole = isinstance(labels, numbers.Integral)  # numpy's too: y.max() + 1 was "not iterable"
    names = None if whole else labels
    count = int(labels) if whole else len(names)
    return EncoderForTagging(encoder, count, labels=names, pool=pool, layer=layer, freeze=freeze, dropout=dropout)


def for_token_classification(encoder: Encoder, num_labels: Optional[int] = None, layer: HeadLayer = None,
                             freeze: bool = True, dropout: float = 0.0,
                             labels: Optional[LabelNames] = None) -> EncoderForTokenClassification:
    """A classifier of each token of `encoder`: a graph's nodes, a recording's frames, an image's
    patches; arguments as `for_classification` (there is no pool: every token gets a class)."""
    labels = label_list(labels)
    num_labels = label_count(num_labels, labels, "for_token_classification")
    return EncoderForTokenClassification(encoder, num_labels, labels=labels, layer=layer, freeze=freeze,
                                         dropout=dropout)

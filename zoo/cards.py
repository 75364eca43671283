"""The model card of a checkpoint saved without one of its own: what the model is (an encoder,
or which head on which encoder, with its labels), how to use it, and the Hub repo and licence
of the weights it came from (`origin_card`); and the cards shipped in `model_cards/`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from zoo import registry
from zoo.errors import ConfigError

#: a card given to save or publish: its Markdown text, or the path of its file
CardSource = str | os.PathLike


def model_card_text(name: str) -> Optional[str]:
    """The model card shipped in `model_cards/<name>.md`, if any."""
    path = registry.data_folder("model_cards") / f"{name}.md"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def card_text(model_card: Optional[CardSource]) -> Optional[str]:
    """The Markdown of a card given as its text or as its file's path (a Path, or a one-line string
    naming a file), as huggingface_hub's `ModelCard.load` takes either: a path passed where the
    text was meant became a README holding only that path, and was published so."""
    if model_card is None:
        return None
    one_line = isinstance(model_card, str) and "\n" not in model_card
    if isinstance(model_card, os.PathLike) or (one_line and Path(model_card).is_file()):
        path = Path(model_card)
        if not path.is_file():
            raise ConfigError(f"model_card {str(path)!r} is not a file; pass the card's file or its Markdown text")
        return path.read_text(encoding="utf-8")
    if not isinstance(model_card, str):
        raise ConfigError(f"model_card is a {type(model_card).__name__}; pass the card's Markdown text or its file")
    if one_line and model_card.strip().lower().endswith(".md"):
        raise ConfigError(f"model_card {model_card!r} names no file; pass the card's Markdown text, or the path "
                          "of its file")
    return model_card


#: the Hub's pipeline tag of an encoder by modality (a head's: its class's `pipeline_tags`)
ENCODER_PIPELINE_TAGS = {"speech": "feature-extraction", "audio": "feature-extraction",
                         "vision": "image-feature-extraction", "tabular": "feature-extraction", "graph": "graph-ml"}
#: what the usage lines of a default card pass as inputs, and what a token is, by modality
CARD_INPUTS = {"speech": '["clip.wav"]', "audio": '["clip.wav"]', "vision": '["photo.jpg"]',
               "tabular": "table", "graph": "graphs"}
TOKEN_NAMES = {"speech": "frame", "audio": "token", "vision": "patch", "graph": "node"}


def default_card(model: Any) -> str:
    """The card of a folder saved without one: what the model is (an encoder, or which head on
    which encoder, with its labels) and how to use it, so that a pushed fine-tuned classifier
    does not present itself as a bare encoder."""
    encoder = getattr(model, "encoder", model)
    head = model.head_config() if hasattr(model, "head_config") else None
    pipeline = (model.pipeline_tags if head else ENCODER_PIPELINE_TAGS)[encoder.modality]
    parameters = sum(p.numel() for p in encoder.parameters())
    inputs = CARD_INPUTS[encoder.modality]
    role, use = encoder.card_usage(inputs)
    layers = f"{encoder.num_layers} layer{'s' * (encoder.num_layers != 1)}"  # "1 layers" was written
    about = (f"a {encoder.family} {encoder.modality} {role} ({layers}, width {encoder.embed_dim}, "
             f"{parameters:,} parameters)")
    if head is None:
        title, about = role, about[0].upper() + about[1:]
    else:
        token = TOKEN_NAMES.get(encoder.modality, "token")
        title, about = f"{head['task']} model", describe_head(head, about, token)
        use = model.card_usage(inputs, token)
    return (
        f"---\nlibrary_name: ssl-zoo\npipeline_tag: {pipeline}\ntags:\n- ssl-zoo\n- {encoder.modality}\n"
        f"- {encoder.family}\n---\n\n# {encoder.family} {title}\n\n{about}. Saved with ssl-zoo; load and use it "
        f"with:\n\n```python\nimport zoo\nmodel = zoo.load(\"PATH_OR_REPO_ID\")\n{use}\n```\n"
    )


def origin_card(model: Any, repo_id: Optional[str] = None) -> str:
    """The default card of `model`, with the Hub repo and licence of the weights `zoo.load` gave
    it (or its encoder) in the metadata: a loaded checkpoint saved or pushed again, fine-tuned or
    not, keeps its base model and its licence's terms (MERT's cc-by-nc-4.0), which a card without
    them would drop from the Hub's page. A repo pushed again to itself (`repo_id`) is not its own base."""
    from zoo.run_cards import with_origin

    origin = getattr(model, "origin", None) or getattr(getattr(model, "encoder", None), "origin", None)
    if origin is None:
        return default_card(model)
    if origin.base_model == repo_id:
        origin = origin._replace(base_model=None)
    return with_origin(default_card(model), origin)


def describe_head(head: dict[str, Any], encoder: str, token: str = "token") -> str:
    """A head in words, e.g. "A classification head over 10 labels (zero, one, ...) on the mean
    of the tokens of the last layer of ENCODER; training it updates the head and the encoder"."""
    from zoo.heads import first_labels

    labels = head.get("labels")
    count = head["num_outputs"]
    outputs = f"{count} {'label' if labels else 'target'}{'s' if count > 1 else ''}"
    if labels:
        outputs += f" ({first_labels(labels)})"
    layer = {None: "the last layer", "weighted": "a learned mix of every layer"}.get(head["layer"],
                                                                                      f"layer {head['layer']}")
    pooled = {"cls": "the cls token", "none": f"each {token}"}.get(head["pool"], "the mean of the tokens")
    trained = "the head only" if head["freeze"] else "the head and the encoder"
    return f"A {head['task']} head over {outputs} on {pooled} of {layer} of {encoder}; training it updates {trained}"

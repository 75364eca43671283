"""The model card of a model a `zoo pretrain` or `zoo finetune` run saves: what the model is and
how to use it (the default card), then how it was trained (steps, time, loss, results, the
loss curve and the run's settings), so that `zoo publish RUN org/name` sends a card that says
where the weights came from, as transformers' Trainer writes one for its runs. A checkpoint
`zoo convert` writes gets a card naming the upstream file it came from, and its licence."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

#: settings that say where and how a run ran, not what it trained (the device is in the card's
#: text): left out of its settings table
NOT_SHOWN = frozenset({"command", "output", "threads", "progress", "no_progress", "time_limit", "checkpoint_every",
                       "zoo_version", "workers", "device", "bf16", "activation_checkpointing"})
#: command settings whose default (None) the run resolved into its TrainConfig: the card shows the value used
RESOLVED = ("lr", "warmup_steps")
#: settings that may name local files or folders: the card shows their last part (`shown_path`)
PATH_SETTINGS = frozenset({"name", "init", "data", "table", "test_table", "labels_from"})


def loss_summary(records: list[dict[str, Any]]) -> tuple[int, float, float]:
    """The loss at the start and at the end of a run: means over the first and the last 10 % of
    its steps (at most 50), since single steps are noisy; returns (window, first, last)."""
    window = max(1, min(50, len(records) // 10))
    first = float(np.mean([record["loss"] for record in records[:window]]))
    last = float(np.mean([record["loss"] for record in records[-window:]]))
    return window, first, last


def run_card(model: Any, records: list[dict[str, Any]], config: Any, settings: dict[str, Any],
             curve_file: Optional[str], how: str, heading: str = "Pretraining", results: str = "",
             stopped_early: bool = False) -> str:
    """The card of a trained model: the default card, then a section (`heading`) saying `how` it
    was trained (e.g. "Pretrained with `zoo pretrain gmml`"), for how many of the run's steps
    (`config`, a TrainConfig; fewer when `stopped_early` by --patience, else by its time limit),
    how long, on what, how the loss fell, the `results` sentence, the loss curve and the run's
    settings."""
    from zoo import __version__
    from zoo.cards import default_card

    window, first, last = loss_summary(records)
    done = records[-1]["step"]
    reason = ("--patience stopped it early" if stopped_early else
              "its time limit stopped it; rerunning its command goes on")
    steps = f"{done:,} steps" if done == config.steps else f"{done:,} of {config.steps:,} steps ({reason})"
    where = f"{config.device} with bf16 autocast" if config.bf16 else config.device
    summary = (f"{how} (ssl-zoo {__version__}) for {steps} in {records[-1]['elapsed']:.0f} s on {where}. The loss "
               f"went from {first:.4g} to {last:.4g} ({averaged(window)}).")
    lines = [default_card(model).rstrip("\n"), "", f"## {heading}", "", f"{summary} {results}".strip(), ""]
    if curve_file is not None:
        lines += [f"![loss curve]({curve_file})", ""]
    resolved = {key: getattr(config, key) if value is None and key in RESOLVED else value
                for key, value in settings.items()}
    lines += ["| setting | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in settings_rows(resolved)]
    return "\n".join(lines) + "\n"


def with_eval_result(card: str, model_name: str, task: str, dataset: str, value: float,
                     metric: str = "accuracy") -> str:
    """The card with a test score (`metric`: accuracy, rmse) in its metadata (`model-index`, as
    transformers' Trainer writes it), which the Hub shows as the model's evaluation results."""
    from huggingface_hub import EvalResult, ModelCard

    parsed = ModelCard(card)
    parsed.data.model_name = model_name
    parsed.data.eval_results = [EvalResult(task_type=task, dataset_type=dataset, dataset_name=dataset,
                                           dataset_split="test", metric_type=metric, metric_value=value)]
    return str(parsed)


def averaged(window: int) -> str:
    """How `loss_summary`'s window reads in the card's sentence on the loss."""
    return "its first and its last step" if window == 1 else f"means of the first and the last {window} steps"


def settings_rows(settings: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The run's settings as (name, value) rows: nested recipes as "recipe.lr"; the command's own
    arguments ("args") are not prefixed, and the architecture (the card's first lines and
    config.json tell it) and settings left unset (None: their defaults) are not shown."""
    rows = []
    for key, value in settings.items():
        if key in NOT_SHOWN or value is None or (not prefix and key == "architecture"):
            continue
        if isinstance(value, dict):
            rows += settings_rows(value, "" if not prefix and key == "args" else f"{prefix}{key}.")
        else:
            shown = (shown_path(value) if key in PATH_SETTINGS else value) if isinstance(value, str) else \
                json.dumps(value)
            rows.append((prefix + key, f"`{shown}`".replace("|", "\\|")))
    return rows


def shown_path(name: str) -> str:
    """A local path as its last part, a zoo name or Hub repo id as it is: a card is published,
    and the machine's folders mean nothing on the Hub and may say too much (a user's name)."""
    from zoo.hub import looks_like_path

    return Path(name).name if looks_like_path(name) or Path(name).exists() else name


def with_base_model(card: str, name: str) -> str:
    """The card of a model trained from the weights of `name` with `base_model` (its Hub repo)
    and the base's licence in its metadata, as transformers' Trainer writes them: weights trained
    from others carry their licence's terms (cc-by-sa's ShareAlike, cc-by-nc's NonCommercial)."""
    return with_origin(card, base_model_of(name))


class Origin(NamedTuple):
    """Where a model's weights came from, as a card's metadata says it: the Hub repo and the
    licence, with the name and link that `license: other` needs to say which licence it is."""

    base_model: Optional[str]
    license: Optional[str]
    license_name: Optional[str] = None
    license_link: Optional[str] = None


def with_origin(card: str, origin: Origin) -> str:
    """The card with `origin`, the Hub repo and licence of the weights it came from, in its
    metadata; a licence replaces the card's name and link too, which belong to the card's own."""
    from huggingface_hub import ModelCard

    parsed = ModelCard(card)
    if origin.base_model is not None:
        parsed.data.base_model = origin.base_model
    if origin.license is not None:
        parsed.data.license, parsed.data.license_name, parsed.data.license_link = (
            origin.license, origin.license_name, origin.license_link)
    return str(parsed)


def base_model_of(name: str, folder: Optional[Path] = None) -> Origin:
    """Where the checkpoint `name` came from, where known: a zoo name's hub_config tells the repo
    and licence (a licence only where it is an identifier, not a note); a local folder's card
    (`folder`, the checkpoint it names, else its own or its encoder/ card) tells them as its
    metadata says them; a Hub repo id is its own repo, with the licence of its card where
    `folder`, the repo's downloaded snapshot, holds one."""
    from zoo import registry
    from zoo.hub import is_repo_id

    entry = registry.named_entry(name)
    if entry is not None:
        return Origin(entry.repo_id, entry.license if LICENCE_ID.fullmatch(entry.license) else None)
    if Path(name).expanduser().exists():  # "runs/x" is spelt as a repo id too
        return card_origin(Path(name).expanduser() if folder is None else folder)
    if is_repo_id(name):
        return repo_origin(name, folder) if folder is not None else Origin(name, None)
    return Origin(None, None)


def repo_origin(repo_id: str, snapshot: Path) -> Origin:
    """`repo_id` with the licence its card in `snapshot` (the cache's folder of one commit) states:
    a license_link to a file of the repo ("LICENSE") becomes that file's URL at the commit, since
    a card saved for another repo would link a file that repo lacks (a URL or a path from the Hub's
    root stays as it is)."""
    origin = card_origin(snapshot)._replace(base_model=repo_id)
    link = origin.license_link
    if link is None or re.match(r"^[a-z][a-z0-9+.-]*:|^/", link, re.IGNORECASE):
        return origin
    return origin._replace(license_link=f"https://huggingface.co/{repo_id}/blob/{snapshot.name}/{link}")


def card_origin(folder: Path) -> Origin:
    """The base_model and licence (its name and link) of the card in `folder` or its run folder's
    encoder/, None where unsaid."""
    from huggingface_hub import ModelCard

    from zoo.hub import CARD_FILE

    cards = [card for card in (folder / CARD_FILE, folder / "encoder" / CARD_FILE) if card.is_file()]
    if not cards:
        return Origin(None, None)
    data = ModelCard.load(cards[0], ignore_metadata_errors=True).data
    base = data.base_model if isinstance(data.base_model, str) else None
    return Origin(base, data.license, data.license_name, data.license_link)


#: a licence identifier as the Hub takes it ("mit", "cc-by-sa-4.0"), not "unknown" or a sentence
LICENCE_ID = re.compile(r"(?!unknown$)[a-z0-9][a-z0-9.-]*")


def converted_card(model: Any, source: Path, fmt: str, licence: Optional[str]) -> str:
    """The card of a checkpoint converted from the upstream file `source` (format `fmt`): the
    default card, saying where the weights came from, with `licence` in its metadata; without one
    it says that the upstream terms apply, since a local file states none and a card published
    without a licence lets the Hub show none."""
    from huggingface_hub import ModelCard

    from zoo import __version__
    from zoo.cards import default_card

    terms = (f"The upstream checkpoint's licence, {licence}, applies to these weights." if licence else
             "The upstream checkpoint's licence applies to these weights; this card states none (`zoo convert "
             "--license ID` writes it).")
    card = (f"{default_card(model).rstrip()}\n\n## Conversion\n\nConverted from `{source.name}` (upstream format "
            f"`{fmt}`) with `zoo convert` (ssl-zoo {__version__}), which checked that the saved folder reloads the "
            f"same weights. {terms}\n")
    if licence is None:
        return card
    parsed = ModelCard(card)
    parsed.data.license = licence
    return str(parsed)


def check_licence(licence: str) -> str:
    """A licence as the Hub's metadata takes it: an identifier such as "mit" or "cc-by-nc-4.0"."""
    from zoo.errors import ConfigError

    if not LICENCE_ID.fullmatch(licence):
        raise ConfigError(f"--license {licence!r}; give the upstream checkpoint's licence as the Hub's identifier, "
                          "e.g. mit, apache-2.0 or cc-by-nc-4.0 (see huggingface.co/docs/hub/repositories-licenses)")
    return licence

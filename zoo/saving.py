"""`save_pretrained` / `push_to_hub` / `from_pretrained` for every zoo model (encoders and
heads alike); the work is done by zoo.hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, TypeVar

from zoo.cards import CardSource
from zoo.errors import CheckpointError

M = TypeVar("M", bound="Checkpointable")


class Checkpointable:
    """Mixin of models that save as a zoo checkpoint folder; they define `config_dict_to_save`."""

    def config_dict_to_save(self) -> dict[str, Any]:
        raise NotImplementedError

    def weights_to_save(self) -> dict[str, Any]:
        """The state dict under the names the saved weights file gives it (`weights_from_saved` reads them)."""
        return self.state_dict()  # type: ignore[attr-defined]

    @classmethod
    def weights_from_saved(cls, state: dict[str, Any]) -> dict[str, Any]:
        """A saved weights file's state dict under the model's own names."""
        return state

    def save_pretrained(self, folder: str | Path, model_card: Optional[CardSource] = None,
                        extra_files: Optional[dict[str, Path]] = None) -> Path:
        """Write config.json, model.safetensors, preprocessor_config.json and README.md atomically.
        `model_card`: the README's Markdown text or the path of its file (None: a card describing
        the model); `extra_files` (name in the folder -> file to copy), such as a loss curve the
        card shows, go in beside them."""
        from zoo.hub import save_folder

        return save_folder(self, folder, model_card=model_card, extra_files=extra_files)

    def push_to_hub(self, repo_id: str, model_card: Optional[CardSource] = None, private: bool = False,
                    revision: Optional[str] = None, commit_message: str = "Upload with ssl-zoo",
                    create_pr: bool = False, token: Optional[str] = None) -> str:
        """Save to a temporary folder and publish it as `zoo publish` does (checked, then one
        commit through huggingface_hub); returns the commit (or pull request) URL. `model_card`: as
        `save_pretrained` takes it; `token`: a Hugging Face token, instead of the one logged in
        (`hf auth login`, HF_TOKEN)."""
        from zoo.hub import push_folder

        return push_folder(self, repo_id, model_card=model_card, private=private, revision=revision,
                           commit_message=commit_message, create_pr=create_pr, token=token)

    @classmethod
    def from_pretrained(cls: type[M], name_or_path: str | Path, **kwargs: Any) -> M:
        """Load by zoo name, Hub repo id or local folder (see `zoo.load`); it must hold a `cls`."""
        from zoo.hub import load

        model = load(name_or_path, **kwargs)
        if not isinstance(model, cls):
            raise CheckpointError(
                f"{name_or_path!r} holds a {type(model).__name__}, not a {cls.__name__}; "
                "use zoo.load() to get whatever it holds"
            )
        return model


def weights_fingerprint(model: Any) -> str:
    """SHA-256 of `model`'s state dict (names, shapes, types and values): what names a model's
    weights in a record that must not mix two models (a pretraining pass's teacher, an embedding
    job's shards and cache), where a name or a path would not tell weights changed in place, and
    a sum would not tell weights that add up the same (rows 0.21 off were reused)."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(f"{name} {tuple(value.shape)} {value.dtype}".encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

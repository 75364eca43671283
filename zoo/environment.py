"""`zoo env`: what a bug report needs to know about this installation (as `transformers env`
prints): versions of the zoo and the libraries it runs on, the accelerator, and where the
Hugging Face cache is and whether it is offline."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

#: the distributions the zoo runs on; pyg-lib and torch-sparse are optional (PyG's NeighborLoader)
DISTRIBUTIONS = ("torch", "torchaudio", "transformers", "torch-geometric", "pyg-lib", "torch-sparse",
                 "huggingface-hub", "safetensors", "datasets", "nnAudio", "numpy", "scikit-learn")


def environment() -> dict[str, Any]:
    """Name -> value of everything `zoo env` reports."""
    import torch
    from huggingface_hub import constants

    from zoo import __version__
    from zoo.hub import datasets_root, is_offline, zoo_cache_root

    report: dict[str, Any] = {"ssl-zoo": __version__, "python": platform.python_version(),
                              "platform": platform.platform()}
    report.update({name: installed_version(name) for name in DISTRIBUTIONS})
    report["accelerator"] = (f"CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}"
                             if torch.cuda.is_available() else "none (CPU only)")
    report["torch threads"] = torch.get_num_threads()
    report["Hugging Face cache"] = constants.HF_HUB_CACHE
    report["HF_HUB_OFFLINE"] = is_offline()
    report["zoo cache (conversions)"] = str(zoo_cache_root())
    report["datasets (ZOO_DATASETS)"] = str(datasets_root())
    return report


def installed_version(distribution: str) -> str:
    """A distribution's version, or "not installed": optional ones (pyg-lib, torch-sparse) are
    reported, not required."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def require_version(distribution: str, minimum: str, needs: str) -> None:
    """Refuse an installed `distribution` older than `minimum`, naming the upgrade: on an older
    transformers (which pip took, as pyproject allowed 4.48) HuBERT and MERT failed inside their
    forward with a bare ImportError, TypeError or AttributeError."""
    from packaging.version import Version

    from zoo.errors import ConfigError

    installed = installed_version(distribution)
    if installed != "not installed" and Version(installed) < Version(minimum):
        raise ConfigError(f"{needs} {distribution} {minimum} or later, and {installed} is installed: "
                          f"pip install -U '{distribution}>={minimum}'")


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown list, to paste into an issue."""
    return "\n".join(f"- {name}: {value}" for name, value in report.items())

"""A non-editable wheel carries hub_configs, model cards, embedded checkpoints and examples;
the editable install `make install` makes is not hidden by folders of the same names."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_install_has_its_data(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("ssl_zoo-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    code = ("import zoo, json; from zoo.hub import model_card_text, load; from zoo.demo import example_inputs; "
            "names = zoo.list_models(); "
            "embedded = [n for n in names if zoo.info(n)['embedded']]; "
            "[load(n) for n in embedded]; "
            "print(json.dumps([zoo.__file__, names, all(model_card_text(n) for n in names), "
            "[len(example_inputs(m)) for m in ('speech', 'audio')], embedded, "
            "len(__import__('modalities.audio.beats.labels', fromlist=['x']).audioset_display_names())]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    import json

    location, names, cards, examples, embedded, audioset_names = json.loads(result.stdout)
    assert location.startswith(str(tmp_path / "site"))
    assert names == sorted(p.stem for p in (ROOT / "hub_configs").glob("*.json"))
    assert cards and examples == [6, 4] and audioset_names == 632
    assert embedded == sorted(p.parent.name for p in (ROOT / "zoo" / "checkpoints").glob("*/config.json"))


def test_folders_named_like_its_packages_in_the_working_directory_do_not_hide_them(tmp_path):
    """With setuptools' default editable finder, an empty `zoo/` or `modalities/` folder where
    Python runs became the package, as a namespace (`import zoo` gave no `load`; with only
    `modalities/`, every family failed to import). The Makefile installs in compat mode."""
    for name in ("zoo", "modalities"):
        (tmp_path / name).mkdir()
    code = "import zoo; print(zoo.load('tjepa-adult').family, zoo.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    family, location = result.stdout.split()
    assert family == "tjepa" and not location.startswith(str(tmp_path))


def test_an_older_transformers_is_named_with_the_upgrade():
    """pyproject allowed transformers 4.48, on which HuBERT and MERT failed inside their forward
    (no `masking_utils` before 5.0, a tuple for a tensor before 5.16); an older one is now refused
    by name when the speech modality is imported, and pyproject asks for the same minimum."""
    tomllib = __import__("pytest").importorskip("tomllib")

    code = ("import importlib.metadata as m; real = m.version\n"
            "m.version = lambda name: '5.15.0' if name == 'transformers' else real(name)\n"
            "import zoo\n"
            "try:\n    zoo.load('hubert-tiny-fsdd')\nexcept zoo.ConfigError as err:\n    print(err)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.stdout.strip().endswith("HuBERT and MERT run HubertModel's layers as laid out in transformers 5.16 or "
                                       "later, and 5.15.0 is installed: pip install -U 'transformers>=5.16'"), run
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "transformers>=5.16,<6" in dependencies

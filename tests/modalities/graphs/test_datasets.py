"""The dataset cache: raw files are copied once, whatever the number of runs started together."""

from concurrent.futures import ThreadPoolExecutor

from modalities.graphs.datasets import working_root


def test_runs_started_together_copy_the_raw_files_once(tmp_path, monkeypatch):
    # one `zoo pretrain` per seed started at once on the GPU collided in one staging folder
    # (FileExistsError) before each copy got a folder of its own
    source = tmp_path / "data" / "SET" / "raw"
    source.mkdir(parents=True)
    for index in range(20):
        (source / f"part{index}.txt").write_text("1, 2\n" * 2000)
    monkeypatch.setenv("ZOO_DATASETS", str(tmp_path / "cache"))
    with ThreadPoolExecutor(8) as pool:
        roots = list(pool.map(lambda _: working_root(tmp_path / "data", "SET"), range(8)))
    assert roots == [tmp_path / "cache"] * 8
    copied = tmp_path / "cache" / "SET"
    assert sorted(p.name for p in copied.iterdir()) == ["raw"]
    assert sorted(p.name for p in (copied / "raw").iterdir()) == sorted(p.name for p in source.iterdir())

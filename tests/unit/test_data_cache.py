"""The content-addressed cache: key sensitivity, corrupt entries rebuilt, concurrent preparation, node-local staging."""

from __future__ import annotations

import copy
import json
import multiprocessing
from pathlib import Path

import pytest

from rna_hpc.config.schema import DataConfig, FeaturizerConfig, SyntheticConfig
from rna_hpc.data.cache import FeatureCache, cache_key, cache_key_inputs
from rna_hpc.data.prepare import prepare
from rna_hpc.data.targets import DataWarning
from rna_hpc.errors import InputError


def small_synthetic(cache_dir: Path, **over: object) -> DataConfig:
    syn = SyntheticConfig(n_targets=6, min_length=12, max_length=20, seed=3)
    return DataConfig(
        cache_dir=str(cache_dir), split_seed=0, synthetic=syn, featurizer=FeaturizerConfig(workers=1), **over
    )


def small_kaggle(rna3d_dir: Path, out: Path, n_train: int = 6, n_val: int = 2) -> Path:
    """The first targets of the real CSVs (a quick, real Kaggle-layout folder)."""
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        seqs = (rna3d_dir / f"{split}_sequences.csv").read_text().splitlines()[: n + 1]
        ids = {line.split(",", 1)[0] for line in seqs[1:]}
        labels = (rna3d_dir / f"{split}_labels.csv").read_text().splitlines()
        keep = [labels[0]] + [ln for ln in labels[1:] if ln.split(",", 1)[0].rsplit("_", 1)[0] in ids]
        (out / f"{split}_sequences.csv").write_text("\n".join(seqs) + "\n")
        (out / f"{split}_labels.csv").write_text("\n".join(keep) + "\n")
    return out


CHANGES = [
    ("featurizer.name", "other"),
    ("featurizer.version", 2),
    ("featurizer.temperature", 25.0),
    ("featurizer.use_bpp", False),
    ("featurizer.max_bp_span", 100),
    ("min_length", 11),
    ("max_length", 64),
    ("val_max_length", 256),
    ("max_missing_fraction", 0.2),
    ("on_error", "raise"),
    ("unknown_nucleotide", "reject"),
    ("format", "kaggle"),
    ("synthetic.seed", 4),
    ("synthetic.n_targets", 7),
    ("synthetic.min_length", 13),
    ("synthetic.max_length", 21),
]


def _set(cfg: DataConfig, dotted: str, value: object) -> DataConfig:
    cfg = copy.deepcopy(cfg)
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = getattr(node, p)
    setattr(node, leaf, value)
    return cfg


@pytest.mark.parametrize(("field", "value"), CHANGES)
def test_key_changes_with_every_setting(tmp_path: Path, field: str, value: object) -> None:
    base = small_synthetic(tmp_path)
    assert cache_key(cache_key_inputs(_set(base, field, value), [])) != cache_key(cache_key_inputs(base, []))


def test_key_ignores_settings_that_do_not_shape_data(tmp_path: Path) -> None:
    base = small_synthetic(tmp_path)
    key = cache_key(cache_key_inputs(base, []))
    for field, value in [("featurizer.workers", 7), ("batch_size", 9), ("num_workers", 3), ("fraction", 0.5)]:
        assert cache_key(cache_key_inputs(_set(base, field, value), [])) == key


def test_key_follows_file_content(tmp_path: Path) -> None:
    f = tmp_path / "train_labels.csv"
    f.write_text("ID,x_1,y_1,z_1\n")
    before = cache_key(cache_key_inputs(small_synthetic(tmp_path), [f], tmp_path))
    f.write_text("ID,x_1,y_1,z_1\nA_1,1,2,3\n")
    assert cache_key(cache_key_inputs(small_synthetic(tmp_path), [f], tmp_path)) != before


def test_second_prepare_is_a_cache_hit(tmp_path: Path) -> None:
    first = prepare(small_synthetic(tmp_path))
    second = prepare(small_synthetic(tmp_path))
    assert not first.report.cache_hit and second.report.cache_hit
    assert [s["target_id"] for s in second.train] == [s["target_id"] for s in first.train]
    assert len(list(tmp_path.glob("*.pt"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1


def test_corrupt_cache_file_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    cfg = small_synthetic(tmp_path)
    prepare(cfg)
    (data,) = tmp_path.glob("*.pt")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # truncated
    with pytest.warns(DataWarning, match="cache entry not used, rebuilding: unreadable"):
        rebuilt = prepare(cfg)
    assert not rebuilt.report.cache_hit and prepare(cfg).report.cache_hit


def test_mismatched_key_inputs_are_rebuilt_with_a_warning(tmp_path: Path) -> None:
    cfg = small_synthetic(tmp_path)
    prepare(cfg)
    (meta,) = tmp_path.glob("*.json")
    inputs = json.loads(meta.read_text())
    inputs["featurizer"]["temperature"] = 99.0
    meta.write_text(json.dumps(inputs))
    with pytest.warns(DataWarning, match="key inputs differ"):
        assert not prepare(cfg).report.cache_hit


def _prepare_in_child(cfg: DataConfig, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait(timeout=60)
    prepare(cfg)


def test_two_processes_preparing_at_once_leave_one_valid_cache(rna3d_dir: Path, tmp_path: Path) -> None:
    data_dir = small_kaggle(rna3d_dir, tmp_path / "data")
    cfg = DataConfig(format="kaggle", dir=str(data_dir), cache_dir=str(tmp_path / "cache"), split="files")
    cfg.featurizer.workers = 1
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_prepare_in_child, args=(cfg, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    files = sorted(f.suffix for f in (tmp_path / "cache").iterdir())
    assert files == [".json", ".pt"]  # no temp files left behind
    key = (tmp_path / "cache").glob("*.pt").__next__().stem
    inputs = json.loads((tmp_path / "cache" / f"{key}.json").read_text())
    payload = FeatureCache(tmp_path / "cache").load(key, inputs)
    assert payload is not None and len(payload["samples"]) == 8
    assert prepare(cfg).report.cache_hit


def test_stage_to_local_copies_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = tmp_path / "node"
    monkeypatch.setenv("SLURM_TMPDIR", str(node))
    prepared = prepare(small_synthetic(tmp_path / "shared", stage_to_local=True))
    staged = Path(prepared.report.cache_path)
    assert staged.parent == node / "rna_hpc_cache"
    assert staged.read_bytes() == next((tmp_path / "shared").glob("*.pt")).read_bytes()


def test_empty_dataset_after_filtering(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"synthetic: no training targets left after filtering; read 6, skipped "):
        prepare(small_synthetic(tmp_path, min_length=50))

"""The launcher's fast composition equals Hydra's full composition of each job (``load_sweep_config``)."""

from __future__ import annotations

import pickle
from pathlib import Path

import cloudpickle
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import OmegaConf

import hydra_plugins.rna_hpc_launcher  # noqa: F401
from rna_hpc.config import CONFIG_DIR, register_configs
from rna_hpc.launch.compose import JobComposer, SweepConfigLoader
from rna_hpc.launch.plan import JobChecker, array_chunks, as_running_job

register_configs()

JOBS = [
    [],
    ["lr=3e-4"],
    ["model=base", "lr=3e-4"],
    ["lr=3e-4", "model=base"],  # value before group: same result
    ["model=tiny", "model.trunk.c_s=48", "model.heads.c_s=48", "trainer.devices=2"],
    ["experiment=pretrain", "seed=7"],
    ["data.batch_size=4", "++new_key=1", "+extra.nested=abc"],
    ["trainer=ddp", "trainer.devices=2", "experiment_name=sweep_${seed}"],
    ["paths.scratch_dir=/tmp/scratch/${hydra:job.num}"],  # a path that depends on the job number
    ["optim.optimizer.weight_decay=0.5", "objective=val/loss", "experiment_name='a b'"],
]


@pytest.fixture(scope="module")
def loader_and_master(tmp_path_factory: pytest.TempPathFactory):
    sweep = tmp_path_factory.mktemp("sweep")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            "train", overrides=["launcher=slurm", f"hydra.sweep.dir={sweep}"], run_mode=RunMode.MULTIRUN
        )
        str(master.hydra.run.dir)  # ${now:...} resolved once on the master, as in a sweep: every job shares it
        yield loader, master


def _resolved(cfg, num: int) -> dict:
    with as_running_job(cfg, num):
        return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("overrides", JOBS, ids=[" ".join(j) or "none" for j in JOBS])
def test_fast_composition_equals_full_composition(loader_and_master, overrides: list[str]) -> None:
    loader, master = loader_and_master
    composer = JobComposer(loader, master)
    fast, full = composer.compose(overrides), loader.load_sweep_config(master, list(overrides))
    assert OmegaConf.to_container(fast, resolve=False) == OmegaConf.to_container(full, resolve=False)
    assert _resolved(fast, 3) == _resolved(full, 3)
    assert OmegaConf.get_type(fast, "model") is OmegaConf.get_type(full, "model")  # schemas kept


def test_one_full_composition_per_structural_variant(loader_and_master) -> None:
    loader, master = loader_and_master
    composer = JobComposer(loader, master)
    for lr in ("1e-4", "2e-4", "3e-4"):
        for model in ("tiny", "base"):
            composer.compose([f"model={model}", f"lr={lr}"])
    assert sorted(composer.bases) == [("model=base",), ("model=tiny",)]


@pytest.mark.parametrize("bad", [["lr=abc"], ["no_such_key=1"], ["model=no_such_model"]])
def test_bad_overrides_fail_as_in_full_composition(loader_and_master, bad: list[str]) -> None:
    loader, master = loader_and_master
    with pytest.raises(Exception) as full:
        loader.load_sweep_config(master, bad)
    with pytest.raises(type(full.value)):
        JobComposer(loader, master).compose(bad)
    assert isinstance(full.value, ConfigCompositionException | Exception)


def test_the_loader_travels_without_its_compositions(loader_and_master) -> None:
    loader, master = loader_and_master
    fast = SweepConfigLoader(loader)
    fast.checker = JobChecker([], slurm=False)
    fast.load_sweep_config(master, ["lr=1e-4"])
    assert fast._checked and fast.composer(master).bases
    copy = pickle.loads(cloudpickle.dumps(fast))  # as submitit pickles the launcher
    assert copy._checked == {} and copy._composer is None and copy.checker is None
    assert copy.on_node and not fast.on_node


def test_the_sweepers_composition_is_checked_once_with_the_number_the_launch_gives(loader_and_master) -> None:
    loader, master = loader_and_master
    calls: list[float] = []
    fast = SweepConfigLoader(loader)
    fast.checker = JobChecker([lambda cfg: calls.append(cfg.lr) or [f"lr: {cfg.lr}"]], slurm=False)
    batch = [["lr=1e-4"], ["lr=2e-4"]]
    returned = [fast.load_sweep_config(master, list(job)) for job in batch]  # the sweeper's early check
    assert calls == [1e-4, 2e-4]
    for cfg, job in zip(returned, batch):  # handed back as composed: the checks left no job number behind
        full = loader.load_sweep_config(master, list(job))
        assert OmegaConf.to_container(cfg, resolve=False) == OmegaConf.to_container(full, resolve=False)
    first = fast.checked_job(master, 0, batch[0])
    assert calls == [1e-4, 2e-4] and first.problems[0] == "lr: 0.0001"  # reused, not checked again
    assert first.job is not None and first.job.run_dir.endswith("/0")  # hydra.sweep.subdir: the job number
    other = fast.checked_job(master, 5, batch[1])  # another number than the early check's: checked again
    assert calls == [1e-4, 2e-4, 2e-4] and other.job is not None and other.job.run_dir.endswith("/5")
    fast.launched(6)
    fast.load_sweep_config(master, list(batch[0]))
    assert list(fast._checked) == [(6, tuple(batch[0]))]


def test_a_job_that_does_not_compose_is_named_not_raised(loader_and_master) -> None:
    loader, master = loader_and_master
    fast = SweepConfigLoader(loader)
    fast.checker = JobChecker([], slurm=False)
    bad = fast.checked_job(master, 2, ["no_such_key=1"])
    assert bad.job is None and bad.problems[0].startswith("job #2 ['no_such_key=1']: does not compose")


def test_arrays_split_at_the_cluster_limit() -> None:
    jobs = list(range(10))
    assert [len(c) for c in array_chunks(jobs, 4)] == [4, 4, 2]
    assert array_chunks(jobs, None) == [jobs]
    assert [c[0] for c in array_chunks(jobs, 4)] == [0, 4, 8]


def test_master_config_is_left_unchanged(loader_and_master) -> None:
    loader, master = loader_and_master
    before = OmegaConf.to_container(master, resolve=False)
    JobComposer(loader, master).compose(["model=base", "lr=5e-4"])
    assert OmegaConf.to_container(master, resolve=False) == before
    assert Path(CONFIG_DIR).is_dir()

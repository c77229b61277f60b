"""Contract tests of ``rna_hpc.compat``: each private API it wraps still behaves as rna_hpc relies on.

A failure names the dependency, its installed version and the private name, so an upgrade that changes one of
them says exactly what to update in ``rna_hpc/compat.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

from rna_hpc import compat


@contextmanager
def contract(name: str) -> Iterator[None]:
    dist = next(d for d, names in compat.PRIVATE_APIS.items() if name in names)
    try:
        yield
    except (AttributeError, ImportError, TypeError, KeyError, AssertionError) as err:
        raise AssertionError(
            f"{dist} {compat.version_of(dist)} changed {name}: {type(err).__name__}: {err}; update rna_hpc/compat.py"
        ) from err


def test_value_overrides_apply_as_hydra_applies_them() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = OmegaConf.create({"a": 1, "b": {"c": "x"}})
    OmegaConf.set_struct(cfg, True)
    parsed = OverridesParser.create().parse_overrides(["a=2", "b.c=y", "+d=3", "~b"])
    with contract("hydra._internal.config_loader_impl.ConfigLoaderImpl._apply_overrides_to_config"):
        compat.apply_value_overrides(cfg, parsed)
        assert OmegaConf.to_container(cfg) == {"a": 2, "d": 3}
    with contract("hydra._internal.config_loader_impl.get_overrides_dirname"):
        node = OmegaConf.create(
            {"hydra": {"job": {"config": {"override_dirname": {"kv_sep": "=", "item_sep": ",", "exclude_keys": []}}}}}
        )
        assert compat.override_dirname(node, parsed[:2]) == "a=2,b.c=y"


def test_hydra_config_is_set_by_reference_and_restored() -> None:
    from hydra import compose, initialize
    from hydra.core.hydra_config import HydraConfig

    with initialize(version_base="1.3", config_path=None):
        cfg = compose(config_name=None, overrides=[], return_hydra_config=True)
        with contract("hydra.core.hydra_config.HydraConfig.cfg"):
            before = HydraConfig.instance().cfg
            cfg.hydra.job.name = "contract"
            with compat.current_hydra_config(cfg):
                assert HydraConfig.get().job.name == "contract"
                cfg.hydra.job.num = 7  # by reference: the job's later changes are seen
                assert HydraConfig.get().job.num == 7
            assert HydraConfig.instance().cfg is before


def test_job_return_value_and_basic_launcher() -> None:
    from hydra.core.plugins import Plugins
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn(status=JobStatus.FAILED)
    ret.return_value = ValueError("boom")
    with contract("hydra.core.utils.JobReturn._return_value"):
        assert isinstance(compat.returned_value(ret), ValueError)
    with contract("hydra._internal.core_plugins.basic_launcher.BasicLauncher"):
        launcher_cls = next(c for c in Plugins.instance().discover() if c.__name__ == "BasicLauncher")
        assert compat.is_basic_launcher(launcher_cls()) and not compat.is_basic_launcher(object())


def test_sbatch_script_of_an_executor_without_slurm(tmp_path: Path) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(slurm_partition="debug", timeout_min=5)
    with contract("submitit.slurm.slurm._make_sbatch_string"):
        script = compat.sbatch_script(executor, 4)
        assert "#SBATCH --array=0-3" in script and "#SBATCH --partition=debug" in script
    with contract("submitit.slurm.slurm.SlurmExecutor._submitit_command_str"):
        assert "submitit.core._submit" in script


def test_slurm_executor_without_srun(tmp_path: Path, monkeypatch) -> None:
    import submitit
    from submitit.slurm.slurm import SlurmExecutor

    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here
    with contract("submitit.slurm.slurm.SlurmExecutor.affinity"):
        assert SlurmExecutor.affinity() < 0
        with compat.slurm_commands_optional():
            executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
        assert SlurmExecutor.affinity() < 0  # restored after the block
        assert "#SBATCH" in compat.sbatch_script(executor, None)


def test_submitit_countdown_and_job_entry_point() -> None:
    import inspect

    from submitit.core.utils import DelayedSubmission

    with contract("submitit.core.utils.DelayedSubmission._timeout_countdown"):
        delayed = DelayedSubmission(print, "x")
        delayed._timeout_countdown = 2
        assert compat.timeout_countdown(delayed) == 2
    with contract("submitit.core.submission.process_job"):
        from submitit.core.submission import process_job

        assert list(inspect.signature(process_job).parameters) == ["folder"]


def test_lightning_checkpoint_and_mlflow_internals(tmp_path: Path) -> None:
    import pytorch_lightning as pl

    from rna_hpc.loggers.mlflow import MLFlowLogger  # Lightning's, opting in to MLflow's file store

    with contract("pytorch_lightning.trainer.trainer.Trainer._checkpoint_connector"):
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
        assert callable(trainer._checkpoint_connector.dump_checkpoint)
        assert callable(compat.dump_checkpoint)
    logger = MLFlowLogger(experiment_name="contract", tracking_uri=f"file:{tmp_path / 'mlruns'}")
    with contract("pytorch_lightning.loggers.mlflow.MLFlowLogger._mlflow_client"):
        assert hasattr(logger._mlflow_client, "get_experiment_by_name")
    with contract("pytorch_lightning.loggers.mlflow.MLFlowLogger._experiment_name"):
        assert logger._experiment_name == "contract"
    with contract("pytorch_lightning.loggers.mlflow.MLFlowLogger._artifact_location"):
        assert hasattr(logger, "_artifact_location")
    seen = []
    with contract("pytorch_lightning.loggers.mlflow.MLFlowLogger._experiment_id"):
        compat.choose_mlflow_experiment(logger, lambda client, name, where: seen.append(name) or "7")
        assert seen == ["contract"] and logger._experiment_id == "7"


def test_lightning_says_whether_a_validation_and_the_epoch_end_follow_a_step() -> None:
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class Probe(pl.Callback):
        def __init__(self) -> None:
            self.seen: list[tuple[bool, bool]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.seen.append((compat.validates_after_step(trainer), compat.epoch_ends_after_step(trainer)))

    class Model(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def validation_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(TensorDataset(torch.zeros(8, 2)), batch_size=2)  # 4 batches, 3 of them trained per epoch
    probe = Probe()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=1,
        check_val_every_n_epoch=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    with contract("pytorch_lightning.loops.training_epoch_loop._TrainingEpochLoop._should_check_val_fx"):
        with contract("pytorch_lightning.loops.fit_loop._FitLoop._data_fetcher"):
            trainer.fit(Model(), train_dataloaders=data, val_dataloaders=data)
            validates, ends = zip(*probe.seen, strict=True)
            assert validates == (False, False, False, False, False, True)  # only the second epoch validates
    with contract("pytorch_lightning.loops.training_epoch_loop._TrainingEpochLoop.done"):
        assert ends == (False, False, True, False, False, True)


def test_interpolations_parsed_once_resolve_as_before() -> None:
    import omegaconf.base

    cfg = OmegaConf.create({"a": 2, "b": "${a}", "c": "x-${oc.select:missing,${b}}", "d": "${oc.env:NO_SUCH_VAR,7}"})
    plain = OmegaConf.to_container(cfg, resolve=True)
    with contract("omegaconf.base.parse"):
        original = omegaconf.base.parse
        with compat.interpolations_parsed_once():
            assert omegaconf.base.parse is not original
            assert OmegaConf.to_container(cfg, resolve=True) == plain == {"a": 2, "b": 2, "c": "x-2", "d": "7"}
            cfg.a = 3  # a cached parse tree names the key, not its value
            assert cfg.c == "x-3"
        assert omegaconf.base.parse is original


def test_missing_keys_are_found_without_resolving() -> None:
    cfg = OmegaConf.create(
        {
            "a": "???",
            "b": {"c": "???", "d": "${nowhere}", "e": [1, "???", {"f": "???"}]},
            "g": None,
            "hydra": {"x": "???"},
        }
    )
    with contract("omegaconf.basecontainer.BaseContainer._content"):
        assert compat.missing_keys(cfg, ("hydra",)) == ["a", "b.c", "b.e.1", "b.e.2.f"]
        assert "hydra.x" in compat.missing_keys(cfg)


def test_every_private_api_has_a_contract() -> None:
    declared = {name for names in compat.PRIVATE_APIS.values() for name in names}
    source = Path(__file__).read_text()
    named = set(re.findall(r'contract\(\s*"([^"]+)"\s*\)', source))
    assert declared - named == set(), "private APIs in rna_hpc.compat without a contract test"


def test_trials_are_read_and_annotated_through_the_study_storage() -> None:
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.ask()
    with contract("optuna.study.Study._storage"), contract("optuna.study.Study._study_id"):
        compat.set_stored_user_attr(study, 0, "run_dir", "/scratch/run0")
        frozen = compat.stored_trial(study, 0)
        assert (frozen.number, frozen.state, frozen.user_attrs) == (0, TrialState.RUNNING, {"run_dir": "/scratch/run0"})
        try:
            compat.trial_id(study, 1)
        except KeyError:
            pass
        else:
            raise AssertionError("no KeyError for a trial number the study does not have")
    study.tell(0, 1.0)
    with contract("optuna.trial.Trial._cached_frozen_trial"):
        assert compat.trial_state(optuna.trial.Trial(study, compat.trial_id(study, 0))) == TrialState.COMPLETE

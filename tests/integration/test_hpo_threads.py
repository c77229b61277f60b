"""What the sweeper's launch threads share: composing sweep configs and snapshotting Hydra's singletons at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hpo_app.harness import HERE
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.singleton import Singleton
from hydra.types import RunMode


def test_concurrent_sweep_composition_and_singleton_snapshots() -> None:
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="app", config_search_path=create_config_search_path(str(HERE / "conf")))
    try:
        master = hydra.compose_config(
            "config", ["+search=smoke"], run_mode=RunMode.MULTIRUN, with_log_configuration=False
        )

        def launch_like(i: int) -> tuple[int, float, str, int]:
            """The per-launch work of the submitit launchers: snapshot singletons, compose the job's config."""
            state = Singleton.get_state()
            opt = "adam" if i % 2 else "sgd"
            cfg = hydra.config_loader.load_sweep_config(master, [f"x={i / 1000}", f"opt={opt}", f"++trial.number={i}"])
            assert state["instances"]
            return cfg.trial.number, cfg.x, cfg.opt.name, i

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(launch_like, range(64)))
    finally:
        GlobalHydra.instance().clear()
    for number, x, opt, i in results:
        assert (number, x, opt) == (i, i / 1000, "adam" if i % 2 else "sgd")

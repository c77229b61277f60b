"""Hydra's launcher contract (``hydra.test_utils.launcher_common_tests``) on rna_hpc's Slurm launcher, real cluster."""

from __future__ import annotations

from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from pytest import mark

import hydra_plugins.rna_hpc_launcher  # noqa: F401  (stores the base_rna_hpc_* schemas before Hydra's fixtures)

pytestmark = mark.slurm
# five-minute jobs with the requeue signal inside the limit; the default partition of the local cluster
SLURM = ["hydra.launcher.timeout_min=5", "hydra.launcher.signal_delay_s=30"]


@mark.parametrize("launcher_name, overrides", [("base_rna_hpc_slurm", SLURM)])
class TestRnaHpcSlurmLauncher(LauncherTestSuite):
    pass


@mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {
                "defaults": [{"override hydra/launcher": "base_rna_hpc_slurm"}],
                "hydra": {"launcher": {"timeout_min": 5, "signal_delay_s": 30}},
            },
            ["-m"],
        )
    ],
)
class TestRnaHpcSlurmLauncherIntegration(IntegrationTestSuite):
    pass

"""Hydra's launcher contract (``hydra.test_utils.launcher_common_tests``) on rna_hpc's local launcher.

The same suites every launcher plugin in Hydra's repository runs: any app, no rna_hpc config, 20 tests. The Slurm
launcher runs them on the real local cluster (tests/slurm/test_hydra_launcher_contract_slurm.py).
"""

from __future__ import annotations

from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from pytest import mark

import hydra_plugins.rna_hpc_launcher  # noqa: F401  (stores the base_rna_hpc_* schemas before Hydra's fixtures)

pytestmark = mark.slow


@mark.parametrize("launcher_name, overrides", [("base_rna_hpc_local", ["hydra.launcher.timeout_min=1"])])
class TestRnaHpcLocalLauncher(LauncherTestSuite):
    pass


@mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {
                "defaults": [{"override hydra/launcher": "base_rna_hpc_local"}],
                "hydra": {"launcher": {"timeout_min": 1}},
            },
            ["-m"],
        )
    ],
)
class TestRnaHpcLocalLauncherIntegration(IntegrationTestSuite):
    pass

"""Puts ``hydra/launcher=slurm`` and ``hydra/launcher=local`` within reach of every Hydra app, rna_hpc's or not."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class RnaHpcLauncherSearchPath(SearchPathPlugin):
    """Appends this plugin's config folder (``hydra/launcher/{slurm,local}.yaml``) to the app's search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="rna_hpc", path="pkg://hydra_plugins.rna_hpc_launcher.conf")

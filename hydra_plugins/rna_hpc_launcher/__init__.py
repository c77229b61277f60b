"""rna_hpc's launchers as a Hydra plugin package; the implementation lives in ``rna_hpc.launch``.

Hydra discovers launchers only under ``hydra_plugins`` and imports this package while it scans for plugins, before
any config is composed; importing ``rna_hpc.launch.config`` here stores the ``base_rna_hpc_*`` launcher schemas and
registers the ``rna_hpc.*`` resolvers in time for every entry point and every ``compose()``.
"""

import rna_hpc.launch.config  # noqa: F401

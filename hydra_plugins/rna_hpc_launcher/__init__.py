"""rna_hpc's launchers as a Hydra plugin package; the implementation lives in ``rna_hpc.launch``.

Hydra discovers launchers only under ``hydra_plugins`` and imports this package while it scans for plugins, before
any config is composed. Importing ``rna_hpc.launch.config`` here stores the ``base_rna_hpc_*`` launcher schemas and
registers the ``rna_hpc.*`` resolvers, and ``rna_hpc.config.schema`` stores the ``base_*`` schemas of rna_hpc's
config tree, in time for every entry point and every ``compose()`` of ``conf/`` (DVC's composition of
``params.yaml`` included).
"""

import rna_hpc.config.schema  # noqa: F401
import rna_hpc.launch.config  # noqa: F401

"""``python -m rna_hpc.status``: the same command as ``rna-hpc-status``."""

from rna_hpc.status import main

raise SystemExit(main())

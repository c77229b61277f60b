"""An installed wheel carries the Hydra config tree: composing works away from the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"

COMPOSE = """
import sys
sys.path = [p for p in sys.path if p.rstrip("/") != {repo!r}]  # hide the editable install's repository
import rna_hpc.config
print("CONFIG_DIR", rna_hpc.config.CONFIG_DIR)
sys.argv = ["train", "--cfg", "job", "experiment=pretrain"]
from rna_hpc.train import main
main()
"""


def test_the_wheel_holds_the_configs_and_composes_from_them(tmp_path: Path) -> None:
    build = subprocess.run(
        [str(UV), "build", "--wheel", "-o", str(tmp_path / "dist"), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("rna_hpc-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert (
        "rna_hpc/conf/train.yaml" in names and "hydra_plugins/rna_hpc_launcher/conf/hydra/launcher/slurm.yaml" in names
    )
    proc = subprocess.run(
        [sys.executable, "-c", COMPOSE.format(repo=str(REPO))],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"CONFIG_DIR {site / 'rna_hpc' / 'conf'}" in proc.stdout
    assert "experiment_name: pretrain" in proc.stdout

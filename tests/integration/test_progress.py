"""Training with stderr not a terminal (a Slurm log file) prints plain progress lines, never carriage returns.

Nor the noise every run would repeat: library warnings and advertisements.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

LINE = re.compile(
    r"epoch (?P<epoch>\d+) step (?P<step>\d+)/(?P<total>\d+) loss (?P<loss>\d+\.\d{4}) "
    r"(?P<rate>\d+\.\d) samples/s eta (?P<eta>\d+:\d\d:\d\d)$"
)


def test_plain_periodic_progress_lines_without_carriage_returns(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "rna_hpc.train",
        "debug=fast",
        "trainer.detect_anomaly=false",
        "trainer.limit_train_batches=3",
        "trainer.log_every_n_steps=1",
        f"paths.scratch_dir={tmp_path / 'scratch'}",
        f"paths.shared_dir={tmp_path / 'shared'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    log_file = tmp_path / "slurm.out"
    with open(log_file, "wb") as out:  # both streams into one file, as in an sbatch job
        proc = subprocess.run(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    text = log_file.read_bytes().decode()
    assert proc.returncode == 0, text[-3000:]
    assert "\r" not in text
    assert "it/s]" not in text  # no Lightning progress bar
    assert "Warning" not in text and "litlogger" not in text, text[-3000:]
    found = [m for m in (LINE.search(line) for line in text.splitlines()) if m]
    assert [int(m["step"]) for m in found] == [1, 2, 3], text[-3000:]
    assert {m["total"] for m in found} == {"3"}
    assert all(float(m["rate"]) > 0 for m in found) and found[-1]["eta"] == "0:00:00"
    validation = [line for line in text.splitlines() if "epoch 0 validation: " in line]
    assert len(validation) == 1 and re.search(r"val/tm 0\.\d{4}", validation[0]) and "elapsed 0:" in validation[0]

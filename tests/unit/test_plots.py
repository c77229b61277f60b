"""Learning curves from Lightning's metrics.csv."""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.loggers import CSVLogger

from rna_hpc.status.plots import plot_run, plot_sweep, read_metrics

PNG = b"\x89PNG\r\n\x1a\n"


def _metrics_csv(root: Path, offset: float = 0.0) -> Path:
    logger = CSVLogger(save_dir=str(root), name="csv", version="")
    logger.log_hyperparams({"lr": 1e-3})
    for step in range(30):
        if step % 3 == 0:
            logger.log_metrics({"train/loss": 2.0 - step / 30, "epoch": step // 10}, step=step)
        if step % 10 == 9:
            logger.log_metrics({"val/tm": 0.2 + offset + step / 100, "val/loss": 1.0, "epoch": step // 10}, step=step)
    logger.log_metrics({"val/tm": float("nan"), "epoch": 3}, step=31)  # a diverged value is no point of the curve
    logger.save()
    return root / "csv" / "metrics.csv"


def test_read_metrics_keeps_steps_and_drops_empty_and_non_finite_cells(tmp_path: Path) -> None:
    curves = read_metrics(_metrics_csv(tmp_path))
    assert curves["train/loss"][0] == (0, 2.0) and len(curves["train/loss"]) == 10
    assert [(s, round(v, 6)) for s, v in curves["val/tm"]] == [(9, 0.29), (19, 0.39), (29, 0.49)]
    assert curves["epoch"][-1] == (31, 3.0) and curves["step"][-1] == (31, 31.0)
    assert read_metrics(tmp_path / "missing.csv") == {}


def test_plot_run_and_sweep_write_png_files(tmp_path: Path) -> None:
    a = read_metrics(_metrics_csv(tmp_path / "a"))
    b = read_metrics(_metrics_csv(tmp_path / "b", offset=0.1))
    run_png = plot_run(a, "val/tm", tmp_path / "out" / "run.png", "job #0")
    sweep_png = plot_sweep({"#0": a, "#1": b, "#2": {}}, "val/tm", tmp_path / "out" / "sweep.png")
    for png in (run_png, sweep_png):
        assert png is not None and png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    assert not list((tmp_path / "out").glob(".*"))  # written atomically, no temp file left


def test_nothing_to_draw_gives_none(tmp_path: Path) -> None:
    assert plot_run({"epoch": [(0, 0.0)]}, "val/tm", tmp_path / "run.png") is None
    assert plot_sweep({"#0": {}}, "val/tm", tmp_path / "sweep.png") is None
    assert not list(tmp_path.iterdir())

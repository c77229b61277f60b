"""runs.jsonl: concurrent writer processes never interleave or lose a line; records carry the lineage fields."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from rna_hpc.checkpoint.runlog import append_record, read_records, run_record

WRITERS = 6
LINES = 60
PAYLOAD = 20_000  # bytes per line: far above PIPE_BUF, so only the lock keeps lines whole


def _writer(path: str, writer: int, start: multiprocessing.Event) -> None:
    start.wait()
    for i in range(LINES):
        append_record(path, {"writer": writer, "i": i, "blob": chr(65 + writer) * PAYLOAD})


def test_parallel_writers_leave_every_line_whole(tmp_path: Path) -> None:
    path = tmp_path / "exp" / "runs.jsonl"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(path), w, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    lines = path.read_text().splitlines()
    assert len(lines) == WRITERS * LINES
    records = [json.loads(line) for line in lines]  # a torn or interleaved line would not parse
    assert sorted((r["writer"], r["i"]) for r in records) == [(w, i) for w in range(WRITERS) for i in range(LINES)]
    assert all(r["blob"] == chr(65 + r["writer"]) * PAYLOAD for r in records)
    for w in range(WRITERS):  # each writer's own lines keep their order
        assert [r["i"] for r in records if r["writer"] == w] == list(range(LINES))


def test_record_has_the_lineage_fields_and_strict_json(tmp_path: Path) -> None:
    record = run_record(
        "train",
        "exp/sweep/0",
        config_hash="c" * 64,
        data_hash="d" * 64,
        outputs={"ckpt/best.ckpt": "e" * 64},
        metrics={"val/tm": 0.5, "val/loss": float("nan")},
    )
    path = append_record(tmp_path / "runs.jsonl", record)
    (line,) = read_records(path)
    assert line["kind"] == "train" and line["run_id"] == "exp/sweep/0"
    assert line["config_hash"] == "c" * 64 and line["data_hash"] == "d" * 64
    assert set(line["git"]) == {"revision", "dirty"}
    assert line["outputs"] == {"ckpt/best.ckpt": "e" * 64}
    assert line["metrics"] == {"val/loss": None, "val/tm": 0.5}
    assert "NaN" not in path.read_text()


def test_secret_values_are_masked_in_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "s3cr3t-token-value")
    path = append_record(tmp_path / "runs.jsonl", {"note": "key s3cr3t-token-value"})
    assert "s3cr3t-token-value" not in path.read_text()
    assert os.path.exists(str(path) + ".lock")

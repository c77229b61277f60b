"""Run every command shown in README.md and docs/*.md, so the documentation cannot rot.

    python scripts/check_docs.py [--only local|slurm|all] [--list] [FILE.md ...]

What is checked (the convention, also in docs/contributing.md):

- every line of a fenced ```bash block (continuation lines joined, ``#`` comments dropped), and every inline code
  span in README.md that starts with ``python -m rna_hpc`` or ``rna-hpc-``;
- a ```text (or unlabelled) block must not hold ``python -m rna_hpc`` commands: label it bash so it is run.

How a command runs (in one scratch directory, with ``SCRATCH``, ``RNA_HPC_PROJECT_DIR`` and ``RNA_HPC_DATA`` set):

- ``rna_hpc.train`` with ``-m`` and ``launcher=slurm|local``: ``hydra.launcher.dry_run=true`` appended (every job is
  composed and validated, nothing is submitted; ``--cfg job`` while the local launcher has no ``dry_run``); with
  ``hpo=``: ``--cfg hydra`` instead of ``-m``;
- other ``rna_hpc.train`` and ``rna_hpc.prepare`` commands: for real, with the tiny budget ``TINY`` (and
  ``TINY_REAL_DATA`` on the real structures) and ``paths.*`` in the scratch directory appended;
- ``--cfg``, ``--info`` and ``--help`` commands, ``rna_hpc.predict``, ``rna_hpc.evaluate``, ``rna-hpc-status``:
  as shown;
- ``make <target>``: ``make -n <target>`` (the target exists and its recipe expands);
- any other program (``sinfo``, ``sbatch``, ``export``): it must exist; it is not run.

``<placeholders>`` are filled from ``PLACEHOLDERS`` (a checkpoint, a sweep, the real data...), each made once on
first use. Commands naming a partition need the Slurm cluster: ``--only slurm`` runs just those, ``--only local`` the
rest. Exit code 1 when any command fails, with the file, line, command and the tail of its output.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# A few steps of the composed model (not debug=fast, which also picks the tiny model: a LoRA fine-tune needs the
# model its base checkpoint was trained with).
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.detect_anomaly=false",
    "data.synthetic.n_targets=12",
    "model.generator.n_steps=4",
]
TINY_REAL_DATA = ["data.fraction=0.02", "data.max_length=40", "data.val_max_length=64"]
REAL_DATA_HINTS = ("data=rna3d", "experiment=")
SHELL_BUILTINS = {"export", "cd", "source", "."}
FENCE = re.compile(r"^```(\w*)\s*$")
INLINE = re.compile(r"`((?:python -m rna_hpc|rna-hpc-)[^` ]* [^`]*)`")
PLACEHOLDER = re.compile(r"<[^<>\s=][^<>=]*>")


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


@dataclass
class Command:
    """One documented command: where it is shown and its text."""

    file: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{_shown(self.file)}:{self.line}"

    @property
    def needs_slurm(self) -> bool:
        return "<partition>" in self.text or "hydra.launcher.partition=" in self.text


def _bash_lines(lines: list[str], start: int, path: Path) -> list[Command]:
    commands, pending, first = [], "", start
    for offset, raw in enumerate(lines):
        text = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            first = start + offset
        if text.endswith("\\"):
            pending += text[:-1].strip() + " "
            continue
        full = (pending + text.strip()).strip()
        pending = ""
        if full:
            commands.append(Command(path, first, full))
    return commands


def extract(path: Path) -> tuple[list[Command], list[str]]:
    """The commands of one Markdown file, and the problems of its code blocks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    commands, problems = [], []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            if path.name == "README.md":
                commands += [Command(path, i + 1, m.group(1)) for m in INLINE.finditer(lines[i])]
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
        body = lines[i + 1 : end]
        if fence.group(1) == "bash":
            commands += _bash_lines(body, i + 2, path)
        elif any("python -m rna_hpc" in b for b in body):
            problems.append(f"{_shown(path)}:{i + 1}: commands in a ```{fence.group(1)} block; label it bash")
        i = end + 1
    return commands, problems


class Context:
    """The scratch directory, the environment and the placeholders made so far."""

    def __init__(self, root: Path, data_dir: Path) -> None:
        self.root, self.data_dir = root, data_dir
        self.values: dict[str, str] = {}
        self.env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "HYDRA_FULL_ERROR": "1",
            "SCRATCH": str(root / "site-scratch"),
            "RNA_HPC_PROJECT_DIR": str(root / "site-project"),
            "RNA_HPC_DATA": str(data_dir),
        }

    def run(self, argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def value(self, name: str) -> str:
        if name not in self.values:
            if name not in PLACEHOLDERS:
                raise KeyError(f"unknown placeholder {name}; add it to PLACEHOLDERS in scripts/check_docs.py")
            self.values[name] = PLACEHOLDERS[name](self)
        return self.values[name]


def _checked(ctx: Context, argv: list[str]) -> str:
    proc = ctx.run(argv)
    if proc.returncode != 0:
        raise RuntimeError(f"making a placeholder failed: {shlex.join(argv)}\n{(proc.stdout + proc.stderr)[-2000:]}")
    return proc.stdout


def _sweep(ctx: Context) -> str:
    """A real one-job sweep of the base model (its checkpoint fits predict and LoRA fine-tuning)."""
    sweep = ctx.root / "placeholder-sweep"
    _checked(
        ctx,
        [sys.executable, "-m", "rna_hpc.train", "-m", "model=base", *TINY, *_paths(ctx), f"hydra.sweep.dir={sweep}"],
    )
    return str(sweep)


def _sequences(ctx: Context) -> str:
    """Three short validation targets of the real data."""
    rows = (ctx.data_dir / "val_sequences.csv").read_text().splitlines()
    import csv

    parsed = list(csv.reader(rows))
    short = [r for r in parsed[1:] if len(r[1]) <= 40][:3]
    out = ctx.root / "val_short_sequences.csv"
    with open(out, "w", newline="") as fh:
        csv.writer(fh).writerows([parsed[0], *short])
    return str(out)


def _submission(ctx: Context) -> str:
    out = ctx.root / "placeholder-predict"
    argv = [
        sys.executable,
        "-m",
        "rna_hpc.predict",
        f"ckpt={ctx.value('<best.ckpt>')}",
        f"input={ctx.value('<sequences csv>')}",
    ]
    _checked(ctx, [*argv, f"hydra.run.dir={out}"])
    return str(out / "submission.csv")


def _partition(ctx: Context) -> str:
    out = _checked(ctx, ["sinfo", "-h", "-o", "%R"])
    return out.split()[0]


PLACEHOLDERS: dict[str, Callable[[Context], str]] = {
    "<sweep dir>": _sweep,
    "<best.ckpt>": lambda ctx: str(Path(ctx.value("<sweep dir>")) / "0" / "ckpt" / "best.ckpt"),
    "<sequences csv>": _sequences,
    "<fasta or sequences csv>": _sequences,
    "<submission.csv>": _submission,
    "<labels csv>": lambda ctx: str(ctx.data_dir / "val_labels.csv"),
    "<data dir>": lambda ctx: str(ctx.data_dir),
    "<folder with Kaggle-layout CSVs>": lambda ctx: str(ctx.data_dir),
    "<partition>": _partition,
    "<account>": lambda ctx: "proj01",
}


def _paths(ctx: Context) -> list[str]:
    return [f"paths.scratch_dir={ctx.root / 'scratch'}", f"paths.shared_dir={ctx.root / 'shared'}"]


def _program(word: str) -> list[str]:
    if word in ("python", "python3", ".venv/bin/python"):
        return [sys.executable]
    if word.startswith("rna-hpc-") or word.startswith(".venv/bin/rna-hpc-"):
        return [str(BIN / Path(word).name)]
    return [word]


def plan(cmd: Command, ctx: Context) -> list[str] | None:
    """The argv that checks ``cmd`` (None: only the program's existence is checked)."""
    first = shlex.split(cmd.text)[0]
    if first != "make" and _program(first)[0] == first and not first.endswith(".py"):
        return None  # another program (sinfo, scontrol, export): it must exist, it is not run
    text = PLACEHOLDER.sub(lambda m: ctx.value(m.group(0)), cmd.text)
    words = shlex.split(text)
    if words[0] == "make":
        return ["make", "-n", "-C", str(REPO), *words[1:]]
    argv = _program(words[0]) + words[1:]
    is_python = argv[0] == sys.executable
    if is_python and len(words) > 1 and words[1].endswith(".py"):  # a script of the repository, as shown
        name, rest = Path(words[1]).name, words[2:]
        if name == Path(__file__).name:
            return []
        if name == "gen_config_reference.py" and "--check" not in rest:  # compare, never rewrite the docs
            rest = [*rest, "--check"]
        return [argv[0], str(REPO / words[1]), *rest]
    module = words[2] if is_python and words[1:2] == ["-m"] and len(words) > 2 else ""
    script = Path(words[0]).name
    if module not in ("rna_hpc.train", "rna_hpc.prepare") and script not in ("rna-hpc-train", "rna-hpc-prepare"):
        return argv if module.startswith("rna_hpc") or script.startswith("rna-hpc-") else None
    args = argv[3:] if module else argv[1:]
    head = argv[: len(argv) - len(args)]
    if any(a in ("--cfg", "--info", "--help", "-c", "-i") for a in args):
        return argv
    if "-m" in args and any(a.startswith("hpo=") for a in args):
        return head + [a for a in args if a != "-m"] + ["--cfg", "hydra"]
    if "-m" in args and ("launcher=slurm" in args or ("launcher=local" in args and _local_dry_run())):
        return _extend(argv, [*_paths(ctx), "hydra.launcher.dry_run=true"])
    if "-m" in args and "launcher=local" in args:  # a local launcher without dry_run: compose only
        return head + [a for a in args if a != "-m"] + ["--cfg", "job"]
    real = TINY_REAL_DATA if any(a.startswith(REAL_DATA_HINTS) for a in args) else []
    where = [] if any(a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in args) else _run_dir(ctx, args)
    return _extend(argv, [*TINY, *real, *_paths(ctx), *where])


def _local_dry_run() -> bool:
    """Whether the local launcher's schema has ``dry_run``."""
    from rna_hpc.launch.config import RnaHpcLocalQueueConf

    return "dry_run" in {f.name for f in dataclasses.fields(RnaHpcLocalQueueConf)}


def _extend(argv: list[str], extra: list[str]) -> list[str]:
    """``argv`` plus the overrides of ``extra`` whose key it does not set already."""
    keys = {a.split("=", 1)[0].lstrip("+~") for a in argv if "=" in a}
    return argv + [e for e in extra if e.split("=", 1)[0] not in keys]


def _run_dir(ctx: Context, args: list[str]) -> list[str]:
    ctx.values["runs"] = str(int(ctx.values.get("runs", "0")) + 1)
    key = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
    return [f"{key}={ctx.root / 'runs' / ctx.values['runs']}"]


def check(cmd: Command, ctx: Context) -> str | None:
    """None when the command works, else the problem."""
    try:
        argv = plan(cmd, ctx)
    except (KeyError, RuntimeError, ValueError) as err:
        return str(err)
    if argv is None:
        word = shlex.split(cmd.text)[0]
        return None if word in SHELL_BUILTINS or shutil.which(word) else f"{word}: no such program"
    if not argv:  # this checker itself
        return None
    proc = ctx.run(argv)
    if proc.returncode != 0:
        return f"exit code {proc.returncode}: {shlex.join(argv)}\n{(proc.stdout + proc.stderr)[-2500:]}"
    return None


ERROR_CLASSES = {
    "ConfigError",
    "InputError",
    "CheckpointError",
    "SweepConfigError",
    "SweepRejected",
    "RequeueLimitReached",
    "TrainingFailed",
    "UnsetEnvironmentVariable",
}
MIN_FRAGMENT = 8  # messages with no literal text this long (wrappers such as '<where>: <error>') are not matched


def _template(node: ast.AST, source: str) -> str | None:
    """A message as written in the code, with ``<expression>`` for each formatted value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.IfExp):
        return _template(node.body, source)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) else f"<{ast.get_source_segment(source, v.value)}>"
            for v in node.values
        )
    return None


def _is_error_call(call: ast.Call) -> bool:
    fn = call.func
    if isinstance(fn, ast.Name):
        return fn.id in ERROR_CLASSES
    if isinstance(fn, ast.Attribute):
        if fn.attr in ERROR_CLASSES:
            return True
        return fn.attr in ("append", "add") and isinstance(fn.value, ast.Name) and fn.value.id == "problems"
    return False


def error_messages() -> list[tuple[str, str]]:
    """``(file:line, message template)`` of every user-facing error raised or collected in the package."""
    found = []
    for path in sorted([*(REPO / "rna_hpc").rglob("*.py"), *(REPO / "hydra_plugins").rglob("*.py")]):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and node.args and _is_error_call(node):
                text = _template(node.args[0], source)
                if text:
                    found.append((f"{path.relative_to(REPO)}:{node.lineno}", text))
    return found


def undocumented_errors(doc: Path) -> list[str]:
    """Messages whose longest literal fragment does not appear in ``doc`` (the troubleshooting page)."""
    text = doc.read_text(encoding="utf-8")
    missing = []
    for where, message in error_messages():
        fragments = [f.strip(" :;,()'\"") for f in re.split(r"<[^<>]*>", message)]
        key = max(fragments, key=len)
        if len(key) >= MIN_FRAGMENT and key not in text:
            missing.append(f"{where}: {message!r} (looked for {key!r})")
    return missing


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every command shown in README.md and docs/*.md.")
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md and docs/*.md)")
    parser.add_argument("--only", choices=("local", "slurm", "all"), default="all")
    parser.add_argument("--list", action="store_true", help="list the commands, run nothing")
    parser.add_argument(
        "--errors", action="store_true", help="only check that docs/troubleshooting.md lists every error"
    )
    args = parser.parse_args(argv)
    if args.errors:
        missing = undocumented_errors(REPO / "docs" / "troubleshooting.md")
        print(f"{len(error_messages())} error message(s), {len(missing)} not in docs/troubleshooting.md")
        print("\n".join(missing), file=sys.stderr)
        return 1 if missing else 0
    data_dir = Path(os.environ.get("RNA_HPC_DATA", REPO.parent / "shared" / "data" / "rna3d")).resolve()
    commands, problems = [], []
    for path in [p.resolve() for p in args.files] or doc_files():
        found, bad = extract(path)
        commands += found
        problems += bad
    if args.only != "all":
        commands = [c for c in commands if c.needs_slurm == (args.only == "slurm")]
    if args.only == "slurm":
        problems = []  # the blocks were checked with the other commands
    if args.list:
        print("\n".join(f"{c.where}: {c.text}" for c in commands))
        return 0
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="check-docs-") as tmp:
        ctx = Context(Path(tmp), data_dir)
        for cmd in commands:
            if cmd.text in seen:
                continue
            seen.add(cmd.text)
            start = time.monotonic()
            problem = check(cmd, ctx)
            print(f"{'ok  ' if problem is None else 'FAIL'} {time.monotonic() - start:5.1f}s {cmd.where}: {cmd.text}")
            if problem:
                problems.append(f"{cmd.where}: {cmd.text}\n  {problem}")
    print(f"{len(seen)} command(s) checked, {len(problems)} problem(s)")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

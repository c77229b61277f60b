"""Launcher-level checks of every job of a sweep, before anything is submitted, and of each job before it starts.

Each check looks at one composed job config (``cfg``, with its ``hydra`` node) and the resolved launcher parameters
of that job (``params``, the plugin's keys) and returns ``key: why`` lines. Nothing is submitted and nothing is left
behind (writability is probed with a temporary file). The launcher collects the lines of every job and raises one
``ConfigError``; the training config itself is ``rna_hpc.config.validate``'s part.

On the node, every task starts as ``python -u -m rna_hpc.launch.preflight -u -m submitit.core._submit <folder>``:
:func:`main` refuses to load the job's pickle (which runs code) from a folder that someone else could have written
to, and otherwise runs the job as submitit's entry point does, in the same process.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rna_hpc import compat
from rna_hpc.launch.resources import GPU_BINDINGS

# Keys of the rna_hpc launcher schemas that are not submitit executor parameters.
OWN_KEYS = (
    "_target_",
    "dry_run",
    "detach",
    "umask",
    "python",
    "srun_args",
    "gpu_binding",
    "consolidate",
    "consolidate_to",
)
# Values written into '#SBATCH --key=value' lines: no spaces, quotes, shell metacharacters or newlines.
_SBATCH_VALUE = re.compile(r"[\w.,:=@%+/\[\]-]*")
# Slurm's feature expressions ('a100&80gb', '[rack1|rack2]'); a '#SBATCH' line is never run by the shell.
_CONSTRAINT_VALUE = re.compile(r"[\w.,:=@%+/\[\]&|*()!-]*")
_UNSAFE = "contains spaces, quotes, newlines or shell metacharacters"
_SBATCH_KEY = re.compile(r"[a-z][a-z0-9_-]*")
# Setup lines run in the sbatch shell: one plain command each, no chaining, substitution or redirection.
_SETUP_FORBIDDEN = re.compile(r"[\n\r\x00;&|`<>]|\$\(")
_SBATCH_FIELDS = ("name", "partition", "account", "qos", "constraint", "comment", "exclude", "gres")
_UMASK = re.compile(r"0?[0-7]{3}")
_SUBMIT_MODULE = "submitit.core._submit"
# Lightning ignores Slurm for jobs with these names and spawns its own processes.
_RESERVED_NAMES = ("bash", "interactive")
_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# OmegaConf's wrapping of a resolver's own one-line message
_RESOLVER_WRAPPING = re.compile(r"(\w+Error: )?\w+ raised while resolving interpolation: ")


def unwrap(message: str) -> str:
    """The first line of a message, without OmegaConf's resolver wrapping."""
    lines = message.strip().splitlines()
    return _RESOLVER_WRAPPING.sub("", lines[0]) if lines else ""


def one_line(err: BaseException) -> str:
    """An exception as one line: the innermost cause's first line."""
    while err.__cause__ is not None:
        err = err.__cause__
    return unwrap(str(err)) or type(err).__name__


def launcher_params(cfg: DictConfig) -> dict[str, Any]:
    """The resolved ``hydra.launcher`` node of one job, without the rna_hpc-only keys."""
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert isinstance(params, dict)
    return {k: v for k, v in params.items() if k not in OWN_KEYS}


def resolution_problems(cfg: DictConfig) -> list[str]:
    """Every ``paths.*`` value must resolve (an unset site variable, a typo in an interpolation)."""
    paths = cfg.get("paths")
    if paths is None:
        return []
    problems = []
    for key in paths:
        try:
            paths[key]
        except Exception as err:
            message = one_line(err)  # keeps the key of the root cause (paths.cache_dir fails through shared_dir)
            problems.append(message if message.startswith("paths.") else f"paths.{key}: {message}")
    return problems


def resource_problems(cfg: DictConfig, params: dict[str, Any]) -> list[str]:
    """One process per device: tasks and nodes must match the trainer, GPUs only on a GPU accelerator."""
    trainer = cfg.get("trainer")
    if trainer is None:
        return []
    problems = []
    tasks, devices = params.get("tasks_per_node"), trainer.get("devices")
    if tasks != devices:
        problems.append(
            f"hydra.launcher.tasks_per_node: is {tasks}, must equal trainer.devices={devices} (one process per device)"
        )
    nodes, num_nodes = params.get("nodes"), trainer.get("num_nodes")
    if nodes != num_nodes:
        problems.append(f"hydra.launcher.nodes: is {nodes}, must equal trainer.num_nodes={num_nodes}")
    gpus = params.get("gpus_per_node") or 0
    if str(trainer.get("accelerator")) in ("gpu", "cuda"):
        if gpus not in (0, devices) and not params.get("gpus_per_task"):
            problems.append(f"hydra.launcher.gpus_per_node: is {gpus}, must equal trainer.devices={devices}")
        elif gpus == 0 and not params.get("gpus_per_task") and not params.get("gres"):
            problems.append("hydra.launcher.gpus_per_node: trainer.accelerator=gpu but the job requests no GPU")
        per_task = params.get("gpus_per_task")
        if per_task not in (None, 0, 1):
            problems.append(f"hydra.launcher.gpus_per_task: is {per_task}, must be 1 (one process per device)")
    elif gpus or params.get("gpus_per_task"):
        key, value = ("gpus_per_node", gpus) if gpus else ("gpus_per_task", params.get("gpus_per_task"))
        problems.append(f"hydra.launcher.{key}: is {value} but trainer.accelerator={trainer.get('accelerator')}")
    return problems


def time_problems(params: dict[str, Any]) -> list[str]:
    """The time limit, the requeue signal before it, and the array throttle must make sense together."""
    problems = []
    timeout_min = params.get("timeout_min") or 0
    if timeout_min < 1:
        problems.append(f"hydra.launcher.timeout_min: must be >= 1 minute, is {timeout_min}")
    delay = params.get("signal_delay_s")
    if delay is not None and not 0 <= delay < timeout_min * 60:
        problems.append(
            f"hydra.launcher.signal_delay_s: is {delay}, must be below the time limit "
            f"({timeout_min} min = {timeout_min * 60} s) or the job is killed before it can requeue"
        )
    for key in ("max_num_timeout", "max_num_preemptions"):
        if (params.get(key) or 0) < 0:
            problems.append(f"hydra.launcher.{key}: must be >= 0")
    if "array_parallelism" in params and params["array_parallelism"] < 1:
        problems.append("hydra.launcher.array_parallelism: must be >= 1")
    return problems


def injection_problems(params: dict[str, Any]) -> list[str]:
    """Values that end up in the sbatch script must not be able to add lines or shell commands to it."""
    problems = []
    for key in _SBATCH_FIELDS:
        value, allowed = params.get(key), _CONSTRAINT_VALUE if key == "constraint" else _SBATCH_VALUE
        if value is not None and not allowed.fullmatch(str(value)):
            problems.append(f"hydra.launcher.{key}: {value!r} {_UNSAFE}")
    name = str(params.get("name", ""))
    if name in _RESERVED_NAMES:
        problems.append(f"hydra.launcher.name: {name!r} makes Lightning ignore Slurm; choose another job name")
    for i, line in enumerate(params.get("setup") or []):
        if _SETUP_FORBIDDEN.search(str(line)):
            problems.append(
                f"hydra.launcher.setup[{i}]: {line!r} must be one plain command (no newline, ';', '&', '|', '`', "
                "'$(', '<', '>')"
            )
    for key, value in (params.get("additional_parameters") or {}).items():
        if not _SBATCH_KEY.fullmatch(str(key)):
            problems.append(f"hydra.launcher.additional_parameters: key {key!r} is not an sbatch option name")
        if not _SBATCH_VALUE.fullmatch(str(value)):
            problems.append(f"hydra.launcher.additional_parameters.{key}: {value!r} {_UNSAFE}")
    return problems


def option_problems(cfg: DictConfig) -> list[str]:
    """The rna_hpc-only launcher keys: umask format; detach and dry runs only under the basic sweeper."""
    launcher = cfg.hydra.launcher
    problems = []
    umask = launcher.get("umask")
    if umask is not None and not _UMASK.fullmatch(str(umask)):
        problems.append(f"hydra.launcher.umask: {umask!r} is not an octal umask such as '022'")
    elif umask is not None and int(str(umask), 8) & 0o022 != 0o022:
        problems.append(
            f"hydra.launcher.umask: {umask!r} lets group or others write into the submitit folder, "
            "and the jobs refuse to load from such a folder; use one such as '022' or '027'"
        )
    binding = launcher.get("gpu_binding")
    if binding is not None and binding not in GPU_BINDINGS:
        problems.append(f"hydra.launcher.gpu_binding: {binding!r} is not one of {', '.join(GPU_BINDINGS)}")
    if launcher.get("consolidate") and not launcher.get("consolidate_to"):
        problems.append(
            "hydra.launcher.consolidate_to: not set, so the files hydra.launcher.consolidate names have nowhere to "
            "go; set it to a folder on shared storage"
        )
    sweeper = OmegaConf.select(cfg, "hydra.sweeper._target_", default="")
    if launcher.get("detach") and sweeper != _BASIC_SWEEPER:
        problems.append(f"hydra.launcher.detach: a sweeper that waits for results ({sweeper}) cannot detach")
    if launcher.get("dry_run") and sweeper != _BASIC_SWEEPER:
        problems.append(
            f"hydra.launcher.dry_run: {sweeper} records its trials before launching them; "
            "dry-run the same overrides with the basic sweeper"
        )
    return problems


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be created or written, probing the nearest existing directory; None when it can."""
    base = _nearest_existing(path.absolute())
    if not base.is_dir():
        return f"{base} is not a directory"
    try:
        fd, probe = tempfile.mkstemp(prefix=".rna_hpc_probe_", dir=base)
    except OSError as err:
        return f"{base} is not writable ({err.strerror})"
    os.close(fd)
    os.unlink(probe)
    return None


def _open_to_others(path: Path) -> bool:
    return path.is_dir() and bool(path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def static_prefix(folder: str) -> Path:
    """The part of a submitit folder before the first ``%`` placeholder (``%j``, ``%A``...)."""
    if "%" not in folder:
        return Path(folder)
    head = folder.split("%", 1)[0]
    return Path(head if head.endswith("/") else os.path.dirname(head) or ".")


def path_problems(
    cfg: DictConfig, params: dict[str, Any], unwritable: Callable[[Path], str | None] = unwritable
) -> list[str]:
    """The shared root and the submitit folder: writable, and not writable by group or others."""
    shared = OmegaConf.select(cfg, "paths.shared_dir", default=None)
    targets = [("paths.shared_dir", Path(str(shared)))] if shared else []
    if params.get("submitit_folder"):
        targets.append(("hydra.launcher.submitit_folder", static_prefix(str(params["submitit_folder"]))))
    problems = []
    for key, path in targets:
        why = unwritable(path)
        if why:
            problems.append(f"{key}: cannot write {path}: {why}")
        elif _open_to_others(path):
            mode = oct(path.stat().st_mode & 0o777)
            problems.append(f"{key}: {path} is writable by group or others (mode {mode}); chmod go-w it")
    return problems


def known_partitions() -> set[str]:
    """Partition names from ``sinfo``; raises RuntimeError with sinfo's message when it fails."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeError(f"sinfo failed: {err}") from err
    if out.returncode != 0:
        raise RuntimeError(f"sinfo failed: {out.stderr.strip() or out.returncode}")
    return {line.strip() for line in out.stdout.splitlines() if line.strip()}


def partition_problems(all_params: Sequence[dict[str, Any]]) -> list[str]:
    """Every partition named by a job must be known to the cluster (one ``sinfo`` call per sweep)."""
    wanted = sorted({str(p["partition"]) for p in all_params if p.get("partition")})
    if not wanted:
        return []
    try:
        known = known_partitions()
    except RuntimeError as err:
        return [f"hydra.launcher.partition: cannot check {wanted}: {err}"]
    return [
        f"hydra.launcher.partition: {name!r} is not a partition of this cluster; known: {sorted(known)}"
        for name in wanted
        if name not in known
    ]


def job_problems(
    cfg: DictConfig, params: dict[str, Any], slurm: bool = True, unwritable: Callable[[Path], str | None] = unwritable
) -> list[str]:
    """Every launcher-level problem of one composed job (the app's own config is its declared checks' part)."""
    unresolved = resolution_problems(cfg)
    problems = unresolved + resource_problems(cfg, params) + time_problems(params) + option_problems(cfg)
    if not unresolved:
        problems += path_problems(cfg, params, unwritable)
    if slurm:
        problems += injection_problems(params)
    return problems


def folder_problems(pickle_path: Path, folder_template: str) -> list[str]:
    """Why a job must not load ``pickle_path``: it, or a folder between it and the static part of the submitit
    folder, is writable by group or others, or it belongs to another user."""
    problems = []
    top = static_prefix(folder_template).absolute()
    folder = pickle_path.parent.absolute()
    chain = [folder, *[p for p in folder.parents if p == top or top in p.parents]]
    for path in [pickle_path.absolute(), *chain]:
        if not path.exists():
            continue
        info = path.stat()
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problems.append(f"{path} is writable by group or others (mode {oct(info.st_mode & 0o777)})")
        elif path == pickle_path.absolute() and info.st_uid != os.geteuid():
            problems.append(f"{path} belongs to user id {info.st_uid}, not to this job's user ({os.geteuid()})")
    return problems


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m rna_hpc.launch.preflight [-u] -m submitit.core._submit <folder>``: check, then run submitit."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["-u"]:
        args = args[1:]
    if len(args) != 3 or args[:2] != ["-m", _SUBMIT_MODULE]:
        sys.exit(f"usage: python -m rna_hpc.launch.preflight [-u] -m {_SUBMIT_MODULE} <folder>")
    import submitit

    os.environ["SUBMITIT_FOLDER"] = args[2]  # as submitit's own entry point does, to resolve %j for this task
    pickle_path = submitit.JobEnvironment().paths.submitted_pickle
    problems = folder_problems(pickle_path, args[2])
    if problems:
        print(f"rna_hpc: refusing to load {pickle_path}: " + "; ".join(problems), file=sys.stderr, flush=True)
        sys.exit(2)
    compat.run_submitit_job(args[2])


if __name__ == "__main__":
    main()

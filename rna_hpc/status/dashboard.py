"""``rna-hpc-status --dashboard <sweep dir>``: optuna-dashboard on the storage of the search run in a sweep dir.

The storage is found as ``rna-hpc-status`` finds it (``rna_hpc.status.hpo.find_storage``: the sweeper's
``optuna_storage.json``, the sweep dir's ``optuna.journal``, or the ``trial.storage`` of its trial jobs) and opened
once before the server listens, so an unreachable database is one line, not a page of errors in the browser. The
dashboard lists every study in that storage (each stage ``<study>-s<k>`` and the refit) with its trials, live. It
is served by the standard library's threaded WSGI server until Ctrl-C; ``--port 0`` picks a free port.
"""

from __future__ import annotations

import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from rna_hpc.errors import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connections do not keep Ctrl-C from ending the server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No line per request (the dashboard polls every few seconds)."""


def search_storage(sweep_dir: Path) -> str:
    """The storage spec of the search in ``sweep_dir``; InputError naming the dir when it holds none."""
    from rna_hpc.status.files import locate_jobs
    from rna_hpc.status.hpo import find_storage

    if not sweep_dir.is_dir():
        raise InputError(f"{sweep_dir}: no such sweep directory")
    spec = find_storage(sweep_dir, None, [])
    if spec is None:
        try:
            spec = find_storage(sweep_dir, *locate_jobs(sweep_dir))
        except InputError:
            spec = None
    if spec is None:
        raise InputError(
            f"{sweep_dir}: no Optuna search storage found (no optuna_storage.json, no optuna.journal, "
            "no trial job with ++trial.storage); give the hydra.sweep.dir of a staged search"
        )
    return spec


def serve(sweep_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, out: TextIO = sys.stdout) -> None:
    """Serve optuna-dashboard on the search's storage until interrupted; prints the URL once it listens."""
    import optuna_dashboard

    from rna_hpc.hpo.storage import display_url, make_storage

    spec = search_storage(sweep_dir)
    app = optuna_dashboard.wsgi(make_storage(spec))
    try:
        httpd = make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
    except OSError as err:
        raise InputError(f"--port {port}: cannot listen on {host}:{port}: {err.strerror or err}") from err
    with httpd:
        url = f"http://{host}:{httpd.server_port}/dashboard"
        print(f"optuna-dashboard of {display_url(spec)} at {url} (Ctrl-C stops it)", file=out, flush=True)
        httpd.serve_forever()

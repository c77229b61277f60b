"""Hold a process inside a ``read()`` of a file in a directory, with Linux fanotify permission events (root only).

A test uses it to stop a Slurm job's rank 0 at a chosen point of a copy (say, after the first chunk of a checkpoint
reached shared storage) and let the cluster kill it there: no hook in the code under test, no timing race.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import struct
import threading
from collections.abc import Callable
from pathlib import Path

_FAN_CLOEXEC = 0x1
_FAN_CLASS_CONTENT = 0x4
_FAN_ACCESS_PERM = 0x20000
_FAN_EVENT_ON_CHILD = 0x08000000
_FAN_MARK_ADD = 0x1
_FAN_ALLOW = 0x1
_AT_FDCWD = -100
# struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid
_EVENT = struct.Struct("IBBHQii")
_RESPONSE = struct.Struct("iI")  # struct fanotify_response: fd, response

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]


class ReadGate:
    """Every ``read()`` of a file directly in ``directory`` asks ``hold(pid, path)`` first.

    Reads for which it returns False go on at once; the first read for which it returns True blocks until the gate
    closes (the process can still be killed meanwhile). ``held`` is set then, with ``(pid, path)`` in ``caught``.
    """

    def __init__(self, directory: Path, hold: Callable[[int, Path], bool]) -> None:
        self._hold = hold
        self._fd = _libc.fanotify_init(_FAN_CLASS_CONTENT | _FAN_CLOEXEC, os.O_RDONLY)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "fanotify_init (root and CONFIG_FANOTIFY_ACCESS_PERMISSIONS needed)")
        mask = _FAN_ACCESS_PERM | _FAN_EVENT_ON_CHILD
        if _libc.fanotify_mark(self._fd, _FAN_MARK_ADD, mask, _AT_FDCWD, os.fsencode(directory)) != 0:
            errno = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(errno, f"fanotify_mark {directory}")
        self.held = threading.Event()
        self.caught: tuple[int, Path] | None = None
        self._pending: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not select.select([self._fd], [], [], 0.1)[0]:
                continue
            buf = os.read(self._fd, 4096)
            offset = 0
            while offset < len(buf):
                length, _, _, _, _, event_fd, pid = _EVENT.unpack_from(buf, offset)
                offset += length
                path = Path(os.readlink(f"/proc/self/fd/{event_fd}"))
                if self.caught is None and self._hold(pid, path):
                    self.caught = (pid, path)
                    self._pending.append(event_fd)
                    self.held.set()
                else:
                    self._answer(event_fd)

    def _answer(self, event_fd: int) -> None:
        with contextlib.suppress(OSError):  # ENOENT: the reader was killed while held
            os.write(self._fd, _RESPONSE.pack(event_fd, _FAN_ALLOW))
        os.close(event_fd)

    def close(self) -> None:
        """Let every held read go on and stop watching."""
        self._stop.set()
        self._thread.join(timeout=30)
        for event_fd in self._pending:
            self._answer(event_fd)
        os.close(self._fd)  # answers whatever was still queued

    def __enter__(self) -> ReadGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

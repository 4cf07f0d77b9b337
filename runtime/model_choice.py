"""Making a model on disk the box's `current` one when the patch chooses it, as a flash would.

The runtime has already loaded and checked the chosen file (the same check as a flash's), so only the
links change here: `previous` takes the old `current`, `current` the chosen file, each by renaming a fresh
symlink over the old one (one rename(2): a reader sees the old link or the new one). The flash's own lock
(deploy/boxside.sh: models/.flash.lock with the owner's boot id and pid) is held meanwhile, so a flash
and a choice from the patch never interleave; while a flash holds it the choice is refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

LOCK_NAME = ".flash.lock"


class ChoiceError(Exception):
    """The links cannot be changed now; the message says why and what to do."""


def is_link_layout(model_path: Path) -> bool:
    """The box's layout: the model path is the `current` symlink in the models folder."""
    return model_path.name == "current" and model_path.is_symlink()


def make_current(model_path: Path, chosen: Path) -> None:
    """`current` -> chosen (a file in the same folder), `previous` -> the old current."""
    folder = model_path.parent
    if chosen.parent.resolve() != folder.resolve():
        raise ChoiceError(f"{chosen} is not in {folder}: flash it to the box first")
    lock = folder / LOCK_NAME
    try:
        lock.mkdir()
    except FileExistsError:
        raise ChoiceError("a flash is in progress on this box; choose again when it ends") from None
    try:
        (lock / "boot").write_text(_boot_id())
        (lock / "pid").write_text(f"{os.getpid()}\n")
        old = os.readlink(model_path)
        if old != chosen.name:
            _set_link(folder, "previous", old)
            _set_link(folder, "current", chosen.name)
    finally:
        shutil.rmtree(lock, ignore_errors=True)


def _set_link(folder: Path, name: str, target: str) -> None:
    fresh = folder / f".{name}.new.{os.getpid()}"
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(target)
    os.replace(fresh, folder / name)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text()
    except OSError:
        return ""

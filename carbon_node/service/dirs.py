"""The node's state and cache directories, checked before start-up: one clear line when one is unusable.

``carbon-node run`` checks both before it builds anything (:func:`prepare_directories`): a directory
that is a file, sits on a read-only file system, is not writable for the user the node runs as, or
whose parent does not exist, ends start-up with one line naming the directory, the setting that chose
it (and where that value came from) and what to do, and exit status 2, like every other configuration
error. Nothing is created unless both directories pass; then each is created with its missing parents,
as before (a parent that cannot be created is one of the failures: its nearest existing ancestor is a
file, read-only, or not writable).

``carbon-node doctor`` runs the same check without creating anything (:func:`directory_problem`).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from carbon_node.service.settings import Settings, SettingsError, env_name

__all__ = ["DIRECTORY_SETTINGS", "directory_problem", "prepare_directories", "setting_problem"]

DIRECTORY_SETTINGS = {
    "state_dir": "state directory (journal, heartbeat, scratch)",
    "cache_dir": "cache directory (models)",
}
"""The directory settings the node writes to, and what each holds."""


def _user() -> str:
    with contextlib.suppress(Exception):  # no passwd entry (a dynamic systemd user in some setups)
        return getpass.getuser()
    return f"uid {os.geteuid()}"


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _not_writable(directory: Path) -> str | None:
    """Why no file can be written in the existing ``directory`` (None if one can), tried for real."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".carbon-node-probe-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def directory_problem(path: Path) -> str | None:
    """Why the node could not use ``path`` as a directory it writes to (None when it can); creates nothing."""
    try:
        return _problem(path)
    except OSError as exc:  # a directory on the way the user may not enter (a 0700 home), a dead mount
        return f"{path} cannot be reached: {exc.strerror or exc}"


def _problem(path: Path) -> str | None:
    if path.exists():
        if not path.is_dir():
            return f"{path} is not a directory"
        reason = _not_writable(path)
        return None if reason is None else f"{path} is not writable: {reason}"
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        return f"{path} cannot be created: {ancestor} is not a directory"
    reason = _not_writable(ancestor)
    return None if reason is None else f"{path} cannot be created in {ancestor}: {reason}"


def _origin(sources: Mapping[str, str], name: str) -> str:
    where = sources.get(name, "default")
    return {"env": f"environment {env_name(name)}", "flag": "command-line flag"}.get(where, where)


def setting_problem(settings: Settings, name: str, sources: Mapping[str, str]) -> str | None:
    """The one line that says why the directory of setting ``name`` cannot be used, or None when it can.

    ``sources`` says where each setting came from (``LoadedSettings.sources``: default, file, env, flag).
    """
    problem = directory_problem(Path(getattr(settings, name)))
    if problem is None:
        return None
    flag = "--" + name.replace("_", "-")
    return (
        f"{DIRECTORY_SETTINGS[name]}: {problem} (setting {name}, from {_origin(sources, name)}). Make it a directory the "
        f"node's user ({_user()}) can write, or choose another with {env_name(name)} or {flag}"
    )


def prepare_directories(settings: Settings, sources: Mapping[str, str]) -> None:
    """Check the state and cache directories, then create them (and the state's ``scratch``).

    Raises :class:`SettingsError` (exit status 2) naming the first unusable one; nothing is created then.
    """
    for name in DIRECTORY_SETTINGS:
        problem = setting_problem(settings, name, sources)
        if problem is not None:
            raise SettingsError(problem)
    for name in DIRECTORY_SETTINGS:
        Path(getattr(settings, name)).mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "scratch").mkdir(exist_ok=True)

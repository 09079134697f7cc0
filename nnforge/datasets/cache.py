"""Where fetched data lives, how it is written there, and the apt helper.

Fetched files are written atomically (temp file in the same directory, fsync,
``os.replace``) so an interrupted fetch never leaves a half-written file that a
later load would mistake for real data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..io.atomic import atomic_write_bytes

__all__ = ["atomic_write_bytes", "cache_dir", "cache_root", "fetch_deb_files"]


def cache_root() -> Path:
    """The nnforge cache: ``$NNFORGE_HOME``, else ``$NNFORGE_CACHE`` (older name), else ``~/.cache/nnforge``."""
    root = os.environ.get("NNFORGE_HOME") or os.environ.get("NNFORGE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "nnforge"


def cache_dir(*parts: str) -> Path:
    """Return :func:`cache_root` joined with ``parts``, created on demand."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(cmd: list[str], cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def fetch_deb_files(package: str, members: list[str]) -> dict[str, bytes]:
    """Download a Debian package (without installing it) and return the bytes of ``members``.

    ``members`` are paths inside the package, e.g. ``usr/share/foo/bar.gz``.  Uses
    ``apt-get download`` + ``dpkg -x`` in a temporary directory, which works without root;
    ``apt-get update`` is tried only when the first download fails (stale or empty lists).
    """
    with tempfile.TemporaryDirectory(prefix="nnforge-deb-") as tmp:
        cmd = ["apt-get", "download", package]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root apt drops to the _apt user, who cannot write into our 0700 temp dir;
            # it then falls back with a noisy warning.  Skip the sandbox explicitly instead.
            cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
        try:
            proc = _run(cmd, tmp)
        except FileNotFoundError as e:
            raise RuntimeError(f"apt-get is not available, cannot fetch {package}: {e}") from e
        if proc.returncode != 0:
            _run(["apt-get", "update"], tmp)  # fails harmlessly when not root
            proc = _run(cmd, tmp)
        if proc.returncode != 0:
            raise RuntimeError(
                f"`apt-get download {package}` failed (exit {proc.returncode}); "
                f"try `apt-get update` as root first.\n{proc.stderr.strip()[-2000:]}"
            )
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if not debs:
            raise RuntimeError(f"`apt-get download {package}` produced no .deb file in {tmp}")
        root = Path(tmp, "root")
        proc = _run(["dpkg", "-x", str(debs[-1]), str(root)], tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"`dpkg -x {debs[-1].name}` failed: {proc.stderr.strip()[-2000:]}")
        out: dict[str, bytes] = {}
        for member in members:
            p = root / member
            if not p.is_file():
                raise RuntimeError(f"{member} not found inside {debs[-1].name}")
            out[member] = p.read_bytes()
        return out


def pip_download(spec: str, dest: str | os.PathLike[str], *extra: str, pattern: str = "*.whl") -> Path:
    """``pip download --no-deps spec`` into ``dest`` (never installed); the downloaded file's path.

    On a terminal pip draws its own progress bar (size, speed, ETA) on stderr; otherwise its output is
    captured and only shown, trimmed, in the error when the download fails.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", *extra,
           "-d", os.fspath(dest), spec]
    if sys.stderr.isatty():
        proc = subprocess.run(cmd + ["--progress-bar", "on"], stdout=sys.stderr, check=False)
        detail = "see pip's output above"
    else:
        proc = subprocess.run(cmd + ["-q"], capture_output=True, text=True, check=False)
        detail = proc.stderr.strip()[-2000:]
    found = sorted(Path(dest).glob(pattern))
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"`pip download --no-deps {spec}` failed (exit {proc.returncode}):\n{detail}")
    return found[0]

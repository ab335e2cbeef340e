"""Paths on the local file system that the run files' writer and the CLI share (no torch)."""

from __future__ import annotations

from pathlib import Path


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (what a write there depends on: its
    file system, its permissions, its limit on name lengths)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


__all__ = ["nearest_existing"]

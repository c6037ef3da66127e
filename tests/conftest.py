"""Test-wide settings: no hub access, no accidental real ADB server."""

from __future__ import annotations

import os

# Hubs are unreachable in CI; a hub id would otherwise retry for ~20 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# adbutils starts `adb start-server` when nothing listens; tests must fail fast instead.
os.environ.setdefault("ADBUTILS_ADB_PATH", "/bin/false")

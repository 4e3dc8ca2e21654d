"""Checkpoints: one safetensors file per run, written atomically, never unpickled.

A checkpoint holds arbitrary nested state (agent networks, optimiser state, RNG states, loop
counters, optionally the replay store). Tensors and arrays go into the safetensors payload; the
nesting, Python scalars and strings go into a JSON manifest stored in the file's metadata. Loading
therefore only ever parses JSON and raw tensor bytes: a foreign or malicious file cannot run code.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = "robo-rl-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.safetensors"


class CheckpointError(Exception):
    """A checkpoint file is missing, truncated, foreign or does not match what loads it."""


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor/array in `obj` by a reference, collecting them in `tensors`."""
    if isinstance(obj, torch.Tensor):
        key = path or "root"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = path or "root"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        # Optimiser state uses int keys; JSON objects only allow strings, so keep (key, value) pairs.
        return {"__dict__": [[k, _flatten(v, f"{path}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at '{path}' in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        raise ValueError(f"unknown manifest node with keys {sorted(obj)}")
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: str | Path, state: dict[str, Any], info: dict[str, Any] | None = None) -> Path:
    """Write `state` to `path` atomically: a temp file in the same folder, fsync, then rename.

    A crash at any moment leaves either the previous complete checkpoint or the new one.
    `info` is small JSON-able metadata readable without loading tensors (step, spaces, config).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    # safetensors refuses tensors that share memory; stored copies are independent anyway.
    tensors = {k: v.clone() if v.numel() else v for k, v in tensors.items()}
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "info": info or {}, "state": skeleton}
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp_name, metadata={"manifest": json.dumps(manifest)})
        with open(tmp_name, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_manifest(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable robo-rl checkpoint ({exc.__class__.__name__}: {exc})") from None
    try:
        manifest = json.loads(metadata["manifest"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: safetensors file without a robo-rl manifest") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: foreign file (format {manifest.get('format')!r}, expected {FORMAT!r})")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {manifest['version']} is newer than this robo-rl")
    return manifest


def read_info(path: str | Path) -> dict[str, Any]:
    """The small metadata of a checkpoint, without loading its tensors."""
    path = _existing(path)
    return _read_manifest(path)["info"]


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load (state, info). Raises CheckpointError naming the file for anything unreadable."""
    path = _existing(path)
    manifest = _read_manifest(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt tensor data ({exc})") from None
    try:
        state = _unflatten(manifest["state"], tensors)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: manifest does not match the stored tensors ({exc})") from None
    return state, manifest["info"]


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file there")
    return path

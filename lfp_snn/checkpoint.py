"""Checkpoints: a plain state dict (``model.pt``, loaded with ``weights_only=True``) and a JSON config, plus the
training state that lets a run resume exactly.

folder/config.json       {"format": 1, "model": ModelConfig.to_dict(), "train": {...}}
folder/model.pt          model.state_dict()
folder/train_state.pt    optimiser, schedule, random generator, homeostasis, initial weights, epochs done
                         (written by the Trainer; plain tensors and numbers, loaded with weights_only=True)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .models import ModelConfig, build_model

FORMAT = 1
TRAIN_STATE = "train_state.pt"


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(
    folder: str | os.PathLike,
    model: nn.Module,
    model_config: ModelConfig,
    train_config: dict | None = None,
    name: str = "model.pt",
) -> Path:
    """Write the state dict and the config into ``folder`` (each file replaced atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_write(folder / name, lambda p: torch.save(state, p))
    cfg = {"format": FORMAT, "model": model_config.to_dict(), "train": train_config or {}}
    _atomic_write(folder / "config.json", lambda p: p.write_text(json.dumps(cfg, indent=2)))
    return folder / name


def save_train_state(folder: str | os.PathLike, state: dict) -> Path:
    """Write the Trainer's state (see the module docstring) atomically to ``folder/train_state.pt``."""
    path = Path(folder) / TRAIN_STATE
    _atomic_write(path, lambda p: torch.save(state, p))
    return path


def load_train_state(folder: str | os.PathLike) -> dict:
    """The state :func:`save_train_state` wrote; FileNotFoundError or ValueError naming the file."""
    path = Path(folder) / TRAIN_STATE
    if not path.is_file():
        raise FileNotFoundError(f"no training state at {path}: the run cannot be resumed exactly")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
        raise ValueError(f"cannot read the training state {path}: {e}") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise ValueError(f"{path} is not a training state written by lfp-snn (no 'epoch' entry)")
    return state


def load_config(folder: str | os.PathLike) -> dict:
    """``config.json`` of a checkpoint folder as a dict with a ``model`` and a ``train`` entry; an error
    that names the file and what is wrong with it otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; a checkpoint is a folder (config.json + model.pt)")
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint config at {path}; expected a folder written by save_checkpoint "
            "(config.json + model.pt)"
        )
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError(
            f"{path}: expected a JSON object with 'format', 'model' and 'train', got {type(cfg).__name__}"
        )
    if cfg.get("format") != FORMAT or "model" not in cfg:
        raise ValueError(
            f"{path}: expected format {FORMAT} with a 'model' entry, got format {cfg.get('format')!r}"
        )
    for key in ("model", "train"):
        if not isinstance(cfg.get(key, {}), dict):
            raise ValueError(f"{path}: '{key}' must be a JSON object, got {type(cfg[key]).__name__}")
    return cfg


def load_checkpoint(
    folder: str | os.PathLike, name: str = "model.pt", map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model from ``config.json`` and load ``model.pt`` into it. Returns (model, config)."""
    if torch.device(map_location).type == "meta":
        raise ValueError("map_location='meta' holds no data; load the weights onto a real device (cpu, cuda)")
    cfg = load_config(folder)
    path = Path(folder) / "config.json"
    try:
        model_config = ModelConfig.from_dict(cfg["model"])
        model = build_model(model_config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: the model entry does not describe a model: {e}") from None
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"cannot read weights from {path}: the file is empty (0 bytes)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise ValueError(f"cannot read weights from {path}: {e}") from None
    if not isinstance(state, dict):
        raise ValueError(
            f"cannot read weights from {path}: it holds a {type(state).__name__}, not a state dict"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"the weights in {path} do not fit the architecture in config.json: {e}") from None
    return model.to(map_location), cfg

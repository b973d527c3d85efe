"""Checkpoints: a plain state dict (``model.pt``, loaded with ``weights_only=True``) and a JSON config.

folder/config.json   {"format": 1, "model": ModelConfig.to_dict(), "train": {...}}
folder/model.pt      model.state_dict()
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .models import ModelConfig, build_model

FORMAT = 1


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


def load_config(folder: str | os.PathLike) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint config at {path}; expected a folder written by save_checkpoint "
            "(config.json + model.pt)"
        )
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if cfg.get("format") != FORMAT or "model" not in cfg:
        raise ValueError(
            f"{path}: expected format {FORMAT} with a 'model' entry, got format {cfg.get('format')!r}"
        )
    return cfg


def load_checkpoint(
    folder: str | os.PathLike, name: str = "model.pt", map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model from ``config.json`` and load ``model.pt`` into it. Returns (model, config)."""
    cfg = load_config(folder)
    model = build_model(ModelConfig.from_dict(cfg["model"]))
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise ValueError(f"cannot read weights from {path}: {e}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"the weights in {path} do not fit the architecture in config.json: {e}") from None
    return model, cfg

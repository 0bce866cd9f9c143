"""Checkpoints: one file holding a model's weights and the configuration that rebuilds it.

A checkpoint is a ``torch.save`` file (read back with ``weights_only=True``, so loading never runs
code from the file) holding::

    {"format": "avspeech-zoo-checkpoint", "version": 1,
     "model": {"class": "SpeechVAE", "module": "zoo.vae", "config": {...}, "state_dict": {...}},
     "guide": {... the same for the guide ...} or None,
     "extra": {...}}          # e.g. "trainer": the trainer's state for exact resume

``zoo.load(path)`` rebuilds the model from the registry of zoo classes (every model and guide class
is decorated with :func:`register`), loads its weights and returns it. Loading into an existing
model checks its class and configuration first, and names the file and every difference.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from zoo.config import default_device
from zoo.errors import ZooInputError

FORMAT = "avspeech-zoo-checkpoint"
VERSION = 1
_REGISTRY: dict[str, type] = {}
# Classes may only be looked up by importing a module of these packages, never an arbitrary one.
_TRUSTED_PACKAGES = ("zoo", "guides")


def register(cls: type) -> type:
    """Class decorator: make a model or guide class rebuildable from checkpoints by its name."""
    name = cls.__name__
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        known = _REGISTRY[name]
        raise ZooInputError(
            f"two zoo classes are named {name!r} ({known.__module__} and {cls.__module__}); "
            "checkpoints find classes by name, so rename one"
        )
    _REGISTRY[name] = cls
    return cls


def registered_class(name: str, module: str | None = None) -> type:
    """The registered class called ``name``, importing its zoo ``module`` first if needed."""
    if name not in _REGISTRY and module and module.split(".")[0] in _TRUSTED_PACKAGES:
        importlib.import_module(module)
    if name not in _REGISTRY:
        raise ZooInputError(
            f"unknown model class {name!r} (module {module}); known classes: {sorted(_REGISTRY)}"
        )
    return _REGISTRY[name]


def _plain(value):
    """Config values compared on load: tuples and lists are the same sequence."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def describe(module: torch.nn.Module, what: str = "model", state_dict: dict | None = None) -> dict:
    """The checkpoint entry of ``module``: class, defining module, config and CPU weights
    (``state_dict`` if given, else the module's current weights).

    ``config`` is ``module.config()``; a guide without ``config()`` (e.g. Pyro's AutoNormal) is
    stored with ``config=None``: its weights can be loaded into a guide you build, not rebuilt.
    """
    config_fn = getattr(module, "config", None)
    if config_fn is None and what == "model":
        raise ZooInputError(
            f"{type(module).__name__} has no config() method: a checkpointed model must say how "
            "to rebuild it (return its constructor arguments from config())"
        )
    return {
        "class": type(module).__name__,
        "module": type(module).__module__,
        "config": _plain(config_fn()) if config_fn is not None else None,
        "state_dict": {
            k: v.detach().cpu()
            for k, v in (state_dict if state_dict is not None else module.state_dict()).items()
        },
    }


def save(
    path, model, guide=None, extra: dict | None = None, *, model_state=None, guide_state=None
) -> Path:
    """Write ``model`` (and ``guide``) with their configs, plus ``extra``, to ONE file ``path``.

    ``model_state`` / ``guide_state`` store those weights instead of the modules' current ones
    (the trainer stores its best weights while the modules hold the latest).
    The file is written to a temporary name and then renamed, so an interrupted save never leaves a
    truncated checkpoint behind. ``extra`` must hold plain values (numbers, strings, lists, dicts,
    tensors). Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": describe(model, "model", model_state),
        "guide": describe(guide, "guide", guide_state) if guide is not None else None,
        "extra": dict(extra or {}),
    }
    _write(path, payload)
    return path


def _write(path: Path, payload: dict) -> None:
    """``torch.save`` to a temporary name in the same folder, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def update_extra(path, extra: dict) -> Path:
    """Add or replace entries of a checkpoint's ``extra`` (e.g. how the model was made), keeping
    weights and trainer state: ``update_extra(path, {"data": "synth corpus, seed 0"})``."""
    payload = read(path)
    payload["extra"].update(extra)
    _write(path, payload)
    return Path(path)


def read(path) -> dict:
    """The raw contents of a zoo checkpoint (tensors on CPU), after checking it is one."""
    path = Path(path)
    if not path.is_file():
        raise ZooInputError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file is reported the same way
        raise ZooInputError(
            f"{path} is not a zoo checkpoint: torch.load could not read it ({error})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ZooInputError(
            f"{path} is not a zoo checkpoint (a torch file without the {FORMAT!r} header; "
            "write checkpoints with zoo.checkpoint.save or zoo.train.fit(checkpoint=...))"
        )
    if payload.get("version") != VERSION:
        raise ZooInputError(
            f"{path} is a zoo checkpoint of format version {payload.get('version')}, this zoo "
            f"reads version {VERSION}"
        )
    return payload


def load_state(module: torch.nn.Module, entry: dict, path, what: str = "model") -> None:
    """Load a checkpoint ``entry`` into ``module`` after checking class and config match."""
    cls_name = type(module).__name__
    if entry["class"] != cls_name:
        raise ZooInputError(
            f"checkpoint {path} holds a {what} of class {entry['class']}, not {cls_name}"
        )
    config_fn = getattr(module, "config", None)
    if entry["config"] is not None and config_fn is not None:
        mine = _plain(config_fn())
        stored = entry["config"]
        keys = sorted(set(mine) | set(stored))
        diff = [k for k in keys if mine.get(k) != stored.get(k)]
        if diff:
            lines = "; ".join(f"{k}: file has {stored.get(k)!r}, {what} has {mine.get(k)!r}"
                              for k in diff)
            raise ZooInputError(
                f"checkpoint {path} holds a {cls_name} with another configuration ({lines})"
            )
    state = module.state_dict()
    missing = sorted(set(state) - set(entry["state_dict"]))
    unexpected = sorted(set(entry["state_dict"]) - set(state))
    shapes = [
        f"{k}: file {tuple(v.shape)}, {what} {tuple(state[k].shape)}"
        for k, v in entry["state_dict"].items()
        if k in state and tuple(v.shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or shapes:
        raise ZooInputError(
            f"checkpoint {path}: the {what}'s weights do not fit the {cls_name} given "
            f"(missing {missing}, unexpected {unexpected}, shape differences {shapes})"
        )
    module.load_state_dict(entry["state_dict"])


def _build(entry: dict, path, what: str, device):
    cls = registered_class(entry["class"], entry.get("module"))
    if entry["config"] is None:
        raise ZooInputError(
            f"checkpoint {path}: the {what} ({entry['class']}) was saved without config() and "
            "cannot be rebuilt; build it yourself and load its weights with load(path, model, guide)"
        )
    module = cls(**entry["config"])
    load_state(module, entry, path, what)
    return module.to(device)


@dataclass
class Checkpoint:
    """Everything a checkpoint holds, rebuilt: ``model``, ``guide`` (None if the file has none or
    it cannot be rebuilt, see :func:`describe`) and ``extra``."""

    model: torch.nn.Module
    guide: torch.nn.Module | None
    extra: dict = field(default_factory=dict)
    path: Path | None = None


def load_checkpoint(path, *, device=None) -> Checkpoint:
    """Rebuild model and guide stored in ``path`` on ``device`` (default: CUDA when present)."""
    payload = read(path)
    device = default_device(device)
    model = _build(payload["model"], path, "model", device)
    guide_entry = payload["guide"]
    guide = None
    if guide_entry is not None and guide_entry["config"] is not None:
        guide = _build(guide_entry, path, "guide", device)
    return Checkpoint(model=model, guide=guide, extra=payload["extra"], path=Path(path))


def load(path, model=None, guide=None, *, device=None):
    """The model stored in ``path``.

    With ``model=None`` the model is rebuilt from its stored class and config; otherwise the
    weights are loaded into ``model`` (and into ``guide`` if given) after checking that class and
    configuration match (a clear :class:`ZooInputError` names the file and every difference).
    The rebuilt model goes to ``device`` (default: CUDA when present); a given model stays where
    it is. Use :func:`load_checkpoint` to get the guide and the extra entries as well.
    """
    payload = read(path)
    if model is None:
        model = _build(payload["model"], path, "model", default_device(device))
    else:
        load_state(model, payload["model"], path, "model")
    if guide is not None:
        if payload["guide"] is None:
            raise ZooInputError(f"checkpoint {path} holds no guide to load into {type(guide)}")
        load_state(guide, payload["guide"], path, "guide")
    return model

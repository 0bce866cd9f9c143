"""The one training loop of the zoo: stochastic variational inference for any model / guide pair.

``fit(model, guide, data, ...)`` maximizes the ELBO with mini-batches, a Pyro ELBO estimator
(``Trace_ELBO`` by default, ``TraceEnum_ELBO`` for enumerated discrete latents, ...) and a
PyTorch optimizer (Pyro's ``ClippedAdam`` by default). It adds what every experiment needs:
KL warm-up, validation ELBO, early stopping, best-model checkpoints, exact resume, a progress bar,
NaN detection that names the culprit site, and CUDA when present.

How a batch reaches the model and guide
    Data items are dicts whose keys are the model's argument names (``{"x": ...}``, plus ``"v"``
    for audio-visual models, ``"mask"`` for padded sequences, ...). Each batch dict is passed as
    keyword arguments, to the model and to the guide, each receiving the entries its signature
    names (all of them if it takes ``**kwargs``). An entry neither of them accepts is an error,
    not silently dropped. A guide (or model) with an ``index`` argument also receives ``index``,
    the positions of the batch's items in the training data (non-amortized guides such as
    :class:`guides.MeanField` need it).

The step
    ``loss.differentiable_loss(model, guide)`` divided by the batch's number of data points (so
    gradients and clipping do not depend on the batch size), backpropagated into the modules'
    parameters, then one step of a torch optimizer. This is the estimator ``pyro.infer.SVI``
    uses; ``SVI`` itself is not, because it finds parameters through the global param store.
    Speed (``benchmarks/speed.py``): Pyro's effect handlers cost Python time at every step; a
    JIT ELBO (``loss=JitTrace_ELBO()``) traces them once and brings a small model's step close
    to hand-written PyTorch; ``pyro.enable_validation(False)`` skips the distributions' argument
    checks (do it once the model is debugged).

Parameters live in the modules
    The parameters optimized are those of the model's and guide's modules that require gradients
    when ``fit`` starts. Training runs in a fresh, temporary scope of Pyro's param store
    (``pyro.get_param_store().scope()``), so re-running a notebook cell never picks up stale
    parameters of an earlier run and the user's own store is left as it was. Parameters frozen
    with ``requires_grad_(False)`` stay frozen: they are not given to the optimizer, and their
    flag is restored afterwards even where Pyro flips it while registering them (pyro issue
    3438, for ``nn.Parameter`` attributes of a ``PyroModule``). A model or guide that keeps free
    parameters outside its modules (bare ``pyro.param``) is refused with a message saying so:
    hold them in a ``PyroModule``.

KL warm-up / beta
    The log-densities of the latent sites (``model.latent_sites``, e.g. ``("z",)``; a name also
    covers indexed sites ``z_1, z_2, ...``) are scaled by ``beta_e`` in both model and guide with
    a site-restricted ``poutine.scale``, so the objective is ``E_q[log p(x|z)] - beta_e KL``.
    ``beta_e = beta * min(1, (e + 1) / kl_warmup_epochs)`` at epoch ``e = 0, 1, ...``.

Reported numbers (``History``), in nats, higher is better
    * ``train_elbo``: mean over the epoch of the training objective per data point (per item of
      the data set: a frame for frame-level models, a sequence for sequence models), with the
      epoch's ``beta`` (it is the ELBO when beta is 1), while the parameters move.
    * ``val_elbo``: ELBO (beta = 1) per data point on ``val_data`` after the epoch, with fixed
      random numbers from one epoch to the next, so the curve shows the model's progress and not
      Monte-Carlo noise.
    * ``val_elbo_per_frame``: the same total ELBO divided by the number of observed frames, i.e.
      of observed vectors at the model's ``observed_sites`` (default ``("x",)``, masked frames
      excluded). Equal to ``val_elbo`` for frame-level models; per STFT frame for sequences.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import random
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoGuide
from pyro.optim import PyroOptim
from pyro.optim.clipped_adam import ClippedAdam
from pyro.poutine.scale_messenger import ScaleMessenger
from pyro.poutine.util import site_is_subsample
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from zoo import checkpoint as ckpt
from zoo.config import default_device
from zoo.errors import ZooInputError

__all__ = ["ClippedAdam", "History", "NonFiniteLossError", "fit", "scale_latents", "evaluate"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names the site(s) responsible."""


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run (see the module docstring for what each value is)."""

    epoch: list[int] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)
    val_elbo: list[float] = field(default_factory=list)
    val_elbo_per_frame: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def curves(self) -> dict:
        """``{label: values}`` for :func:`zoo.plots.elbo_curves`."""
        curves = {"train": self.train_elbo}
        if self.val_elbo:
            curves["validation"] = self.val_elbo
        return curves

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> History:
        return cls(**values)


# ----------------------------------------------------------------------------- KL warm-up
def _site_matches(name: str, sites) -> bool:
    """``name`` is one of ``sites`` or an indexed instance of one (``z_3`` for ``z``)."""
    return any(name == s or re.fullmatch(re.escape(s) + r"_\d+", name) for s in sites)


class _LatentScaleMessenger(ScaleMessenger):
    """``poutine.scale`` restricted to the latent sample sites named in ``sites``."""

    def __init__(self, sites, scale):
        super().__init__(scale)
        self.sites = tuple(sites)

    def _process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"]:
            if _site_matches(msg["name"], self.sites):
                super()._process_message(msg)


def scale_latents(fn, sites, scale: float):
    """``fn`` with the log-densities of its latent sites ``sites`` scaled by ``scale`` (> 0).

    Applied to both model and guide, this weighs the KL term by ``scale`` (KL warm-up, beta-VAE)
    and leaves the likelihood term alone.
    """
    return _LatentScaleMessenger(sites, scale)(fn)


# ----------------------------------------------------------------------------- data
def _check_batch_dict(data: Mapping, what: str) -> dict:
    if not data:
        raise ZooInputError(f"{what} is an empty dict")
    lengths = set()
    for key, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise ZooInputError(
                f"{what}[{key!r}] must be a tensor with the data points along dim 0, "
                f"got {type(value).__name__}"
            )
        if value.dim() == 0:
            raise ZooInputError(f"{what}[{key!r}] must have the data points along dim 0")
        lengths.add(value.shape[0])
    if len(lengths) != 1:
        sizes = {k: tuple(v.shape) for k, v in data.items()}
        raise ZooInputError(f"{what}: all entries need the same length along dim 0, got {sizes}")
    return dict(data)


class _WithIndex(Dataset):
    """Items ``(position, item)`` of a dataset of dicts."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        item = self.dataset[i]
        if not isinstance(item, Mapping):
            raise ZooInputError(
                f"data set items must be dicts keyed by model argument names, item {i} is a "
                f"{type(item).__name__}"
            )
        return i, item


def _tensor_view(dataset) -> dict | None:
    """The dataset's items as whole tensors, if it holds them as attributes named like its item
    keys (as ``FrameDataset`` does with ``.x`` / ``.v``): batches are then sliced, not collated
    item by item. Checked on the first and last items; None otherwise."""
    try:
        first, last = dataset[0], dataset[len(dataset) - 1]
    except Exception:
        return None
    if not isinstance(first, Mapping):
        return None
    tensors = {}
    for key, value in first.items():
        whole = getattr(dataset, key, None)
        if not (torch.is_tensor(whole) and torch.is_tensor(value)) or len(whole) != len(dataset):
            return None
        if not (torch.equal(whole[0], value) and torch.equal(whole[-1], last[key])):
            return None
        tensors[key] = whole
    return tensors


class _Batches:
    """Mini-batches ``(batch_dict, index)`` of a data set, on ``device``.

    A dict of tensors (or a tensor, meaning ``{"x": tensor}``, or a tensor-backed dataset, see
    :func:`_tensor_view`) is moved to the device once and sliced there; any other ``Dataset`` of
    dicts goes through a ``DataLoader``. ``batch_size=None`` is the full
    batch. Shuffling draws from ``generator`` only, so its state decides the order.
    """

    def __init__(self, data, batch_size, shuffle, generator, device, num_workers, what):
        self.device = device
        self.shuffle = shuffle
        self.generator = generator
        if isinstance(data, torch.Tensor):
            data = {"x": data}
        if not isinstance(data, Mapping) and hasattr(data, "__getitem__") and len(data):
            data = _tensor_view(data) or data
        if isinstance(data, Mapping):
            self.tensors = {
                k: v.to(device) for k, v in _check_batch_dict(data, what).items()
            }
            self.n_items = next(iter(self.tensors.values())).shape[0]
            self.loader = None
        elif isinstance(data, Dataset) or hasattr(data, "__getitem__"):
            self.n_items = len(data)
            if self.n_items == 0:
                raise ZooInputError(f"{what} is empty")
            if batch_size is None or batch_size >= self.n_items:
                # Full batch: collate once, then reuse.
                index, tensors = next(iter(DataLoader(_WithIndex(data), batch_size=self.n_items)))
                self.tensors = {
                    k: v.to(device) for k, v in _check_batch_dict(tensors, what).items()
                }
                self.loader = None
            else:
                self.tensors = None
                self.loader = DataLoader(
                    _WithIndex(data),
                    batch_size=batch_size,
                    shuffle=shuffle,
                    generator=generator,
                    num_workers=num_workers,
                    pin_memory=device.type == "cuda",
                )
        else:
            raise ZooInputError(
                f"{what} must be a Dataset of dicts, a dict of tensors or a tensor, "
                f"got {type(data).__name__}"
            )
        if batch_size is not None and batch_size <= 0:
            raise ZooInputError(f"batch_size must be positive or None, got {batch_size}")
        self.batch_size = self.n_items if batch_size is None else min(batch_size, self.n_items)

    def keys(self):
        if self.tensors is not None:
            return list(self.tensors)
        return list(self.loader.dataset.dataset[0])

    def __iter__(self):
        if self.loader is not None:
            for index, batch in self.loader:
                yield _check_batch_dict(batch, "batch"), index
                # tensors go to the device in _to_device, after the check
            return
        n = self.n_items
        device = next(iter(self.tensors.values())).device
        if self.batch_size >= n:
            yield self.tensors, torch.arange(n, device=device)
            return
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(device)
        else:
            order = torch.arange(n, device=device)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            yield {k: v[index] for k, v in self.tensors.items()}, index


def _to_device(batch: dict, index, device):
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return batch, index.to(device)


def _n_items(batch: dict) -> int:
    return next(iter(batch.values())).shape[0]


# ----------------------------------------------------------------------------- calling convention
class _Caller:
    """Calls a model or guide with the batch entries its signature accepts."""

    def __init__(self, fn, what):
        self.fn = fn
        self.what = what
        target = fn.forward if isinstance(fn, torch.nn.Module) else fn
        params = inspect.signature(target).parameters.values()
        self.takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
        names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        self.names = set(names)
        self.required = {
            p.name
            for p in params
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        self.wants_index = "index" in self.names

    def accepts(self, key: str) -> bool:
        return self.takes_kwargs or key in self.names

    def kwargs(self, batch: dict, index) -> dict:
        kwargs = {k: v for k, v in batch.items() if self.accepts(k)}
        if self.wants_index:
            kwargs["index"] = index
        return kwargs

    def check_keys(self, keys, data_what: str):
        missing = self.required - set(keys) - {"index"}
        if missing:
            raise ZooInputError(
                f"the {self.what} needs arguments {sorted(missing)} that {data_what} items do not "
                f"provide (they have {sorted(keys)})"
            )


def _model_callable(model):
    """The generative story of ``model``: its ``model`` method for a zoo model, else itself."""
    if isinstance(model, torch.nn.Module) and callable(getattr(model, "model", None)):
        return model.model
    return model


def _module_of(fn):
    """The module holding ``fn``'s parameters: ``fn`` itself or the owner of a bound method."""
    if isinstance(fn, torch.nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None


# ----------------------------------------------------------------------------- optimizer
def _make_optimizer(optimizer, params, lr: float) -> torch.optim.Optimizer:
    """A torch optimizer over ``params`` from a torch optimizer class, a ``pyro.optim`` wrapper
    (``pyro.optim.Adam``) or a ``PyroOptim`` instance (``pyro.optim.ClippedAdam({...})``)."""
    if isinstance(optimizer, PyroOptim):
        args = optimizer.pt_optim_args
        if callable(args) or optimizer.pt_clip_args:
            raise ZooInputError(
                "optimizer: per-parameter optim args and clip_args of PyroOptim are not supported "
                "by fit; pass a torch optimizer class (e.g. ClippedAdam, which clips gradients)"
            )
        args = dict(args)
        if "lr" in args and args["lr"] != lr:
            raise ZooInputError(
                f"optimizer has lr={args['lr']} but fit was given lr={lr}: give one of them"
            )
        args["lr"] = lr
        return optimizer.pt_optim_constructor(params, **args)
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer(params, lr=lr)
    if callable(optimizer) and getattr(optimizer, "__module__", "").startswith("pyro.optim"):
        name = optimizer.__name__
        cls = ClippedAdam if name == "ClippedAdam" else getattr(torch.optim, name, None)
        if cls is not None:
            return cls(params, lr=lr)
    raise ZooInputError(
        f"optimizer must be a torch optimizer class (default pyro's ClippedAdam) or a pyro.optim "
        f"optimizer, got {optimizer!r}"
    )


# ----------------------------------------------------------------------------- RNG state
def _rng_state(generator: torch.Generator, device: torch.device) -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "loader": generator.get_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, generator: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    generator.set_state(state["loader"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ----------------------------------------------------------------------------- diagnostics
def _nonfinite_report(model_call, guide_call, batch: dict, modules) -> list[str]:
    """What is non-finite on this batch: data entries, site values, site log-probs, parameters."""
    problems = []
    for key, value in batch.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            problems.append(f"data entry {key!r} has NaN/Inf values")
    for module in modules:
        for name, param in module.named_parameters():
            if not torch.isfinite(param).all():
                problems.append(f"parameter {type(module).__name__}.{name} is NaN/Inf")
    # Without argument validation, NaN parameters reach the sites and show up there.
    with torch.no_grad(), pyro.validation_enabled(False):
        try:
            guide_trace = poutine.trace(guide_call).get_trace()
            model_trace = poutine.trace(poutine.replay(model_call, trace=guide_trace)).get_trace()
        except Exception as error:  # report what the trace itself chokes on
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            return problems + [f"running model/guide on the batch raised: {first_line}"]
        for which, trace in (("guide", guide_trace), ("model", model_trace)):
            for name, site in trace.nodes.items():
                if site["type"] != "sample" or site_is_subsample(site):
                    continue
                value = site["value"]
                if torch.is_tensor(value) and value.is_floating_point():
                    if not torch.isfinite(value).all():
                        problems.append(f"{which} site {name!r} has a NaN/Inf value")
                        continue
                try:
                    log_prob = site["fn"].log_prob(value)
                except Exception as error:
                    first_line = str(error).splitlines()[0] if str(error) else ""
                    problems.append(f"{which} site {name!r}: log_prob raised {first_line}")
                    continue
                if not torch.isfinite(log_prob).all():
                    problems.append(f"{which} site {name!r} has a NaN/Inf log_prob")
    return problems


def _raise_if_non_finite(error, run_model, run_guide, batch, modules) -> None:
    """Turn a distribution's argument error caused by NaN/Inf into a NonFiniteLossError."""
    # Distribution argument checks reject NaN parameters before any loss exists.
    problems = _nonfinite_report(run_model, run_guide, batch, modules)
    if any("NaN/Inf" in problem for problem in problems):
        raise NonFiniteLossError(
            f"a distribution got non-finite arguments; on this batch: {'; '.join(problems)}"
        ) from error


# ----------------------------------------------------------------------------- evaluation
def _count_frames(model_call, observed_sites, n_items: int) -> float:
    """Observed frames in one batch: event instances at ``observed_sites`` (masked excluded)."""
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(model_call).get_trace()
    frames = 0.0
    found = False
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and site["is_observed"]:
            if _site_matches(name, observed_sites):
                found = True
                shape = site["fn"].batch_shape
                mask = site["mask"]
                if mask is None or mask is True:
                    frames += math.prod(shape)
                else:
                    frames += float(torch.as_tensor(mask).expand(shape).sum())
    return frames if found else float(n_items)


def evaluate(model, guide, data, *, loss=None, batch_size=None, seed=0) -> dict:
    """ELBO of ``(model, guide)`` on ``data`` (beta = 1), per data point and per frame.

    Same conventions as :func:`fit` (batch dicts, ``index`` for guides that take it), on the
    device of the model's parameters. The random numbers are fixed by ``seed`` and the global RNG
    is left as it was. Returns ``{"elbo": per data point, "elbo_per_frame": per observed frame,
    "n_items", "n_frames"}``.
    """
    loss = loss if loss is not None else Trace_ELBO()
    model_call = _Caller(_model_callable(model), "model")
    guide_call = _Caller(guide, "guide")
    modules = [m for m in (_module_of(model) or _module_of(model_call.fn), _module_of(guide))
               if m is not None]
    device = next((p.device for m in modules for p in m.parameters()), torch.device("cpu"))
    batches = _Batches(data, batch_size, False, torch.Generator(), device, 0, "data")
    with _isolated_params(modules):
        return _evaluate(model_call, guide_call, modules, batches, loss, seed, device,
                         getattr(model, "observed_sites", ("x",)))


def _evaluate(model_call, guide_call, modules, batches, loss, seed, device, observed_sites,
              frame_counts: list | None = None) -> dict:
    """ELBO sums over ``batches``; ``frame_counts`` caches the frames per batch between calls."""
    devices = [device] if device.type == "cuda" else []
    was_training = [m.training for m in modules]
    for module in modules:
        module.eval()
    total, n_items = 0.0, 0
    if frame_counts is None:
        frame_counts = []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        if not frame_counts:  # a model run per batch, before the random numbers are fixed
            for batch, index in batches:
                batch, index = _to_device(batch, index, device)
                m_kwargs = model_call.kwargs(batch, index)
                frame_counts.append(_count_frames(lambda m_kwargs=m_kwargs: model_call.fn(
                    **m_kwargs), observed_sites, _n_items(batch)))
        torch.manual_seed(seed)
        for batch, index in batches:
            batch, index = _to_device(batch, index, device)
            m_kwargs = model_call.kwargs(batch, index)
            g_kwargs = guide_call.kwargs(batch, index)

            def run_model(m_kwargs=m_kwargs):
                return model_call.fn(**m_kwargs)

            def run_guide(g_kwargs=g_kwargs):
                return guide_call.fn(**g_kwargs)

            total -= float(loss.loss(run_model, run_guide))
            n_items += _n_items(batch)
    n_frames = sum(frame_counts)
    for module, training in zip(modules, was_training):
        module.train(training)
    return {
        "elbo": total / n_items,
        "elbo_per_frame": total / n_frames,
        "n_items": n_items,
        "n_frames": n_frames,
    }


# ----------------------------------------------------------------------------- fit
def _check_settings(epochs, batch_size, lr, beta, kl_warmup_epochs, patience, checkpoint, resume):
    if not isinstance(epochs, int) or epochs < 1:
        raise ZooInputError(f"epochs must be a positive int, got {epochs!r}")
    if not lr > 0:
        raise ZooInputError(f"lr must be > 0, got {lr!r}")
    if not beta > 0:
        raise ZooInputError(f"beta must be > 0, got {beta!r}")
    if kl_warmup_epochs < 0:
        raise ZooInputError(f"kl_warmup_epochs must be >= 0, got {kl_warmup_epochs!r}")
    if patience is not None and patience < 1:
        raise ZooInputError(f"patience must be None or >= 1, got {patience!r}")
    if resume and checkpoint is None:
        raise ZooInputError("resume=True needs checkpoint=<path of the run to resume>")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ZooInputError(f"batch_size must be a positive int or None, got {batch_size!r}")


def _state_dict_cpu(module) -> dict | None:
    if module is None:
        return None
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _optimizer_state_cpu(optimizer) -> dict:
    state = optimizer.state_dict()

    def cpu(value):
        if torch.is_tensor(value):
            return value.detach().cpu().clone()
        if isinstance(value, dict):
            return {k: cpu(v) for k, v in value.items()}
        return value

    return {"state": cpu(state["state"]), "param_groups": copy.deepcopy(state["param_groups"])}


def fit(
    model,
    guide,
    train_data,
    val_data=None,
    *,
    epochs: int,
    batch_size: int | None = None,
    lr: float,
    loss=None,
    optimizer=ClippedAdam,
    kl_warmup_epochs: int = 0,
    beta: float = 1.0,
    patience: int | None = None,
    checkpoint=None,
    resume: bool = False,
    seed: int = 0,
    device=None,
    progress: bool = True,
    num_workers: int = 0,
) -> History:
    """Train ``model`` and ``guide`` by SVI; returns the :class:`History`.

    Args:
        model: a zoo model (its ``model`` method is the generative story) or any Pyro model.
        guide: a guide sampling the model's latent sites (e.g. ``model.default_guide()``,
            :class:`guides.MeanField`, ``AutoNormal(model)``).
        train_data: a ``Dataset`` of dicts keyed by model argument names, a dict of tensors
            (data points along dim 0) or a tensor (meaning ``{"x": tensor}``).
        val_data: same kinds; if given, the ELBO on it is computed after every epoch and decides
            the best model and early stopping.
        epochs: total epochs (with ``resume``, the total including the epochs already done).
        batch_size: data points per step; ``None`` = the whole data set in one step.
        lr: learning rate.
        loss: a Pyro ELBO (default ``Trace_ELBO()``; ``TraceEnum_ELBO`` for enumerated discrete
            latents). A JIT ELBO (``JitTrace_ELBO``, ``JitTraceEnum_ELBO``, ...) compiles the step
            once per batch shape: faster on small models (``benchmarks/speed.py``), for models
            of static structure; validation then uses its non-JIT counterpart.
        optimizer: a torch optimizer class, built as ``optimizer(params, lr=lr)`` (default Pyro's
            ``ClippedAdam``, which clips each gradient element to +-10), or a ``pyro.optim`` one.
        kl_warmup_epochs: epochs over which beta ramps up linearly (0: no warm-up).
        beta: weight of the KL term once warmed up (1 = the ELBO).
        patience: stop after this many epochs without a better validation ELBO (needs
            ``val_data``; counted once warm-up is over).
        checkpoint: path of ONE file, rewritten after every epoch: the best model and guide so far
            (by validation ELBO; the latest without ``val_data``), loadable with ``zoo.load``,
            plus the trainer's latest state for ``resume``.
        resume: continue the run saved in ``checkpoint`` (model, guide, optimizer, epoch, RNG
            states, history): training N epochs equals training k then resuming to N, bit for bit
            on CPU. The other settings must be the same as in the saved run.
        seed: seeds torch, Python and NumPy at the start, and the shuffling of batches.
        device: where to train (default: CUDA when present); model and guide are moved there.
        progress: show a tqdm progress bar with the running ELBO.
        num_workers: DataLoader workers for a ``Dataset``.

    At the end, with ``val_data``, model and guide hold the best weights (those in the
    checkpoint); without, the latest.

    Raises:
        NonFiniteLossError: the loss became NaN/Inf; the message names the sites, data entries or
            parameters that are non-finite on the failing batch.
    """
    _check_settings(epochs, batch_size, lr, beta, kl_warmup_epochs, patience, checkpoint, resume)
    if patience is not None and val_data is None:
        raise ZooInputError("patience needs val_data: early stopping watches the validation ELBO")
    loss = loss if loss is not None else Trace_ELBO()
    if _is_jit(loss) and not hasattr(loss, "differentiable_loss"):
        raise ZooInputError(
            f"loss={type(loss).__name__} is not supported by fit (no differentiable_loss); use "
            "its non-JIT counterpart"
        )
    device = default_device(device)
    model_fn = _model_callable(model)
    model_module, guide_module = _module_of(model) or _module_of(model_fn), _module_of(guide)
    modules = [m for m in (model_module, guide_module) if m is not None]
    for module in modules:
        module.to(device)
    model_call, guide_call = _Caller(model_fn, "model"), _Caller(guide, "guide")

    generator = torch.Generator()
    generator.manual_seed(seed)
    pyro.set_rng_seed(seed)
    train = _Batches(train_data, batch_size, True, generator, device, num_workers, "train_data")
    val = None
    if val_data is not None:
        if guide_call.wants_index:
            raise ZooInputError(
                f"val_data with a non-amortized guide ({type(guide).__name__}): it has posteriors "
                "for the training frames only. To score held-out data, fit a new one on val_data "
                "with the model frozen (model.requires_grad_(False)), then use zoo.train.evaluate"
            )
        # Its own generator: DataLoader iterators draw a seed from theirs, which must not move
        # the training generator.
        val = _Batches(val_data, batch_size, False, torch.Generator(), device, num_workers,
                       "val_data")
    for batches, what in ((train, "train_data"), (val, "val_data")):
        if batches is None:
            continue
        keys = batches.keys()
        unused = [k for k in keys if not (model_call.accepts(k) or guide_call.accepts(k))]
        if unused:
            raise ZooInputError(
                f"{what} items have entries {unused} that neither the model nor the guide takes "
                "as an argument (use a data set without them, or a model that uses them)"
            )
        model_call.check_keys(keys, what)
        guide_call.check_keys(keys, what)

    with _isolated_params(modules):
        state = _Trainer(model, model_call, guide, guide_call, modules, loss, optimizer, lr,
                         beta, kl_warmup_epochs, train, device)
        settings = {
            "batch_size": batch_size, "lr": lr, "beta": beta, "kl_warmup_epochs": kl_warmup_epochs,
            "seed": seed, "loss": type(loss).__name__, "n_train": train.n_items,
            "optimizer": type(state.optimizer).__name__,
        }
        history = History()
        best = {"epoch": None, "val": -math.inf, "model": None, "guide": None}
        bad_epochs = 0
        start_epoch = 0
        if resume:
            start_epoch, history, best, bad_epochs = _resume(
                checkpoint, settings, model_module, guide_module, state, generator, device
            )
        observed_sites = getattr(model, "observed_sites", ("x",))
        val_frame_counts: list = []  # frames per validation batch, counted at the first epoch

        bar = tqdm(total=epochs, initial=start_epoch, disable=not progress, desc="fit", unit="epoch")
        try:
            for epoch in range(start_epoch, epochs):
                if history.stopped_early:
                    break
                started = time.perf_counter()
                beta_e = beta * min(1.0, (epoch + 1) / kl_warmup_epochs) if kl_warmup_epochs else beta
                train_elbo = state.train_epoch(train, beta_e, epoch, bar)
                history.epoch.append(epoch + 1)
                history.train_elbo.append(train_elbo)
                history.beta.append(beta_e)
                warmed_up = epoch + 1 >= kl_warmup_epochs
                if val is not None:
                    scores = _evaluate(model_call, guide_call, modules, val, loss, seed + 1, device,
                                       observed_sites, val_frame_counts)
                    history.val_elbo.append(scores["elbo"])
                    history.val_elbo_per_frame.append(scores["elbo_per_frame"])
                    improved = warmed_up and scores["elbo"] > best["val"]
                    if improved:
                        bad_epochs = 0
                    elif warmed_up:
                        bad_epochs += 1
                else:
                    improved = True
                if improved:
                    best = {
                        "epoch": epoch + 1,
                        "val": history.val_elbo[-1] if val is not None else None,
                        "model": _state_dict_cpu(model_module),
                        "guide": _state_dict_cpu(guide_module),
                    }
                    history.best_epoch = epoch + 1
                if patience is not None and bad_epochs >= patience:
                    history.stopped_early = True
                history.epoch_seconds.append(time.perf_counter() - started)
                if checkpoint is not None:
                    _save(checkpoint, model_module, guide_module, state, generator, device,
                          history, best, bad_epochs, settings)
                postfix = {"elbo": f"{train_elbo:.4g}"}
                if val is not None:
                    postfix["val"] = f"{history.val_elbo[-1]:.4g}"
                bar.set_postfix(postfix)
                bar.update(1)
        finally:
            bar.close()
        if val is not None and best["model"] is not None:
            _load_weights(model_module, best["model"])
            _load_weights(guide_module, best["guide"])
        return history


@contextlib.contextmanager
def _isolated_params(modules):
    """A fresh, temporary scope of Pyro's param store; frozen parameters' flags are restored.

    Pyro registers module parameters in its global store when a model runs; in a scope of its
    own, a run never sees parameters of an earlier one with the same names, and the user's store
    comes back untouched. Registering an ``nn.Parameter`` of a ``PyroModule`` sets its
    ``requires_grad`` (pyro issue 3438): frozen parameters get their flag (and no gradient) back.
    """
    frozen = [p for m in modules for p in m.parameters() if not p.requires_grad]
    with pyro.get_param_store().scope(), warnings.catch_warnings():
        # pyro.module's note on each frozen parameter it skips (once per step otherwise).
        warnings.filterwarnings("ignore", message=".*not registered in the param store because")
        try:
            yield
        finally:
            for param in frozen:
                param.requires_grad_(False)
                param.grad = None


def _load_weights(module, state):
    if module is not None and state is not None:
        module.load_state_dict(state)


def _is_jit(loss) -> bool:
    cls = loss if isinstance(loss, type) else type(loss)
    return cls.__name__.startswith("Jit")


def _elbo_copy(loss, cls=None):
    """A new ELBO of class ``cls`` (default: the same) with ``loss``'s settings."""
    cls = cls or type(loss)
    settings = {
        "num_particles": loss.num_particles,
        "max_plate_nesting": loss.max_plate_nesting,
        "vectorize_particles": loss.vectorize_particles,
        "strict_enumeration_warning": loss.strict_enumeration_warning,
    }
    if _is_jit(cls):
        settings["ignore_jit_warnings"] = loss.ignore_jit_warnings
    return cls(**settings)


class _Trainer:
    """The model / guide / optimizer of one fit, and its SVI step."""

    def __init__(self, model, model_call, guide, guide_call, modules, loss, optimizer, lr, beta,
                 kl_warmup_epochs, train, device):
        self.model_call, self.guide_call = model_call, guide_call
        self.modules = modules
        self.loss = loss
        self.device = device
        batch, index = _to_device(*next(iter(train)), device)
        # One run of guide and model on a first batch: builds lazily created parameters (e.g.
        # AutoNormal's) before the optimizer is made, and shows which sites and params exist.
        def run_model():
            return model_call.fn(**model_call.kwargs(batch, index))

        def run_guide():
            return guide_call.fn(**guide_call.kwargs(batch, index))

        try:
            guide_trace = poutine.trace(run_guide).get_trace()
            model_trace = poutine.trace(poutine.replay(run_model, trace=guide_trace)).get_trace()
        except ValueError as error:
            try:
                _raise_if_non_finite(error, run_model, run_guide, batch, modules)
            except NonFiniteLossError as non_finite:
                raise NonFiniteLossError(
                    f"fit stopped before training, on the first batch: {non_finite}"
                ) from error
            raise
        if loss.max_plate_nesting == math.inf:
            # Set it now (Pyro would guess it by running the model at the first step, which
            # draws random numbers and would make a resumed run differ from an unbroken one).
            loss.max_plate_nesting = max(
                [-f.dim for t in (guide_trace, model_trace) for s in t.nodes.values()
                 if s["type"] == "sample" for f in s["cond_indep_stack"] if f.vectorized] + [0]
            )
        guide_latents = [
            name for name, site in guide_trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]
            and not site_is_subsample(site)
        ]
        if isinstance(guide_call.fn, AutoGuide) and train.batch_size < train.n_items:
            local = [
                name for name in guide_latents
                if any(f.vectorized and (f.full_size or f.size) == f.size
                       for f in guide_trace.nodes[name]["cond_indep_stack"])
            ]
            if local:
                raise ZooInputError(
                    f"{type(guide_call.fn).__name__} keeps one posterior per position in the "
                    f"batch for the local sites {local}, not one per data point: with mini-batches "
                    "different data points would share them. Use batch_size=None (full batch), "
                    "guides.MeanField (it receives the batch's positions) or an amortized encoder"
                )
        declared = getattr(model, "latent_sites", None)
        self.latent_sites = tuple(declared) if declared is not None else tuple(guide_latents)
        others = [n for n in guide_latents if not _site_matches(n, self.latent_sites)]
        if others and (beta != 1.0 or kl_warmup_epochs):
            raise ZooInputError(
                f"KL warm-up / beta scales the latent sites {self.latent_sites}, but the guide "
                f"also samples {others}: their KL would not be scaled. Use a guide sampling the "
                "model's latent sites only, or beta=1 and kl_warmup_epochs=0"
            )
        self.eval_loss = loss
        self.jit = _is_jit(loss)
        if self.jit:
            self._setup_jit(batch)
        params, seen = [], set()
        for module in modules:
            for param in module.parameters():
                if param.requires_grad and id(param) not in seen:
                    seen.add(id(param))
                    params.append(param)
        for trace in (guide_trace, model_trace):
            for name, site in trace.nodes.items():
                if site["type"] != "param":
                    continue
                value = site["value"]
                leaf = value.unconstrained() if hasattr(value, "unconstrained") else value
                if torch.is_tensor(leaf) and leaf.requires_grad and id(leaf) not in seen \
                        and leaf.is_leaf:
                    raise ZooInputError(
                        f"parameter {name!r} lives in Pyro's global param store (pyro.param), "
                        "not in the model's or guide's modules: fit only trains module "
                        "parameters; hold it as an nn.Parameter of a PyroModule"
                    )
        if not params:
            raise ZooInputError("model and guide have no trainable parameters (requires_grad)")
        self.params = params
        self.optimizer = _make_optimizer(optimizer, params, lr)

    def _setup_jit(self, batch: dict) -> None:
        """Positional model / guide for a JIT ELBO: ``(beta, index, *batch values)``.

        Pyro's JIT ELBOs take tensors positionally (keyword tensors would be baked into the
        compiled trace), and bind the model and guide of their first call: fit uses a fresh copy
        of the ELBO and two wrappers made once. ``beta`` is a tensor input, so KL warm-up does
        not recompile; the batch shapes go in a keyword (non-tensor keywords key the compiled
        versions), so a smaller last batch gets its own compiled step.
        """
        base = next(c for c in type(self.loss).__mro__ if not _is_jit(c))
        self.eval_loss = _elbo_copy(self.loss, base)
        self.loss = _elbo_copy(self.loss)
        self.jit_keys = list(batch)
        self.compiled_shapes: set = set()
        model_call, guide_call, sites = self.model_call, self.guide_call, self.latent_sites

        def positional(call):
            def run(beta, index, *values, shapes=None):
                kwargs = call.kwargs(dict(zip(self.jit_keys, values)), index)
                with _LatentScaleMessenger(sites, beta):
                    return call.fn(**kwargs)

            return run

        self.model_positional = positional(model_call)
        self.guide_positional = positional(guide_call)

    def _jit_loss(self, batch: dict, index, beta_e: float) -> torch.Tensor:
        if list(batch) != self.jit_keys:
            raise ZooInputError(f"batch keys {list(batch)} differ from the first batch's "
                                f"{self.jit_keys}: a JIT ELBO needs the same entries each time")
        values = [batch[k] for k in self.jit_keys]
        beta = torch.tensor(float(beta_e), device=values[0].device)
        shapes = tuple(tuple(v.shape) for v in values)
        args = (self.model_positional, self.guide_positional, beta, index, *values)
        if shapes not in self.compiled_shapes:
            # Compiling runs the step twice; with its own random numbers, a resumed run (which
            # compiles at another time) draws the same ones as an unbroken run.
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                self.loss.differentiable_loss(*args, shapes=shapes)
            self.compiled_shapes.add(shapes)
        return self.loss.differentiable_loss(*args, shapes=shapes)

    def step(self, batch: dict, index, beta_e: float) -> float:
        """One SVI step on ``batch``; returns the loss per data point (negative objective)."""
        n = _n_items(batch)
        m_kwargs = self.model_call.kwargs(batch, index)
        g_kwargs = self.guide_call.kwargs(batch, index)

        def run_model():
            return self.model_call.fn(**m_kwargs)

        def run_guide():
            return self.guide_call.fn(**g_kwargs)

        model_fn, guide_fn = run_model, run_guide
        if beta_e != 1.0:
            model_fn = scale_latents(model_fn, self.latent_sites, beta_e)
            guide_fn = scale_latents(guide_fn, self.latent_sites, beta_e)
        # Per-data-point objective: gradients and clipping do not depend on the batch size.
        try:
            if self.jit:
                loss = self._jit_loss(batch, index, beta_e) / n
                value = loss.detach().item()
                if loss.requires_grad and math.isfinite(value):
                    loss.backward()
            elif hasattr(self.loss, "differentiable_loss"):
                # Backpropagate ourselves: Pyro's loss_and_grads only does when it sees param
                # sites, which a model method called outside its module's context does not emit.
                loss = self.loss.differentiable_loss(model_fn, guide_fn) / n
                value = loss.detach().item()
                if loss.requires_grad and math.isfinite(value):
                    loss.backward()
            else:  # e.g. TraceGraph_ELBO
                value = float(self.loss.loss_and_grads(poutine.scale(model_fn, scale=1.0 / n),
                                                       poutine.scale(guide_fn, scale=1.0 / n)))
        except ValueError as error:
            _raise_if_non_finite(error, run_model, run_guide, batch, self.modules)
            raise
        if not math.isfinite(value):
            self.optimizer.zero_grad(set_to_none=True)
            problems = _nonfinite_report(run_model, run_guide, batch, self.modules)
            raise NonFiniteLossError(
                f"the loss is {value}; on this batch: "
                + ("; ".join(problems) if problems else "no site is non-finite on a re-run "
                   "(a rare sample overflowed: lower lr or check the model's scales)")
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value

    def train_epoch(self, train: _Batches, beta_e: float, epoch: int, bar) -> float:
        for module in self.modules:
            module.train()
        total, n_items = 0.0, 0
        for i, (batch, index) in enumerate(train):
            batch, index = _to_device(batch, index, self.device)
            try:
                value = self.step(batch, index, beta_e)
            except NonFiniteLossError as error:
                raise NonFiniteLossError(
                    f"fit stopped at epoch {epoch + 1}, batch {i + 1}: {error}"
                ) from None
            n = _n_items(batch)
            total += value * n
            n_items += n
            bar.set_postfix({"elbo": f"{-total / n_items:.4g}"}, refresh=False)
        return -total / n_items


def _save(path, model_module, guide_module, state, generator, device, history, best, bad_epochs,
          settings):
    trainer_state = {
        "epoch": history.epoch[-1],
        "settings": settings,
        "model_state": _state_dict_cpu(model_module),
        "guide_state": _state_dict_cpu(guide_module),
        "optimizer": _optimizer_state_cpu(state.optimizer),
        "rng": _rng_state(generator, device),
        "history": history.to_dict(),
        "best_epoch": best["epoch"],
        "best_val": best["val"],
        "bad_epochs": bad_epochs,
    }
    # The top-level weights are the best ones (what zoo.load gives); the latest are in "trainer".
    ckpt.save(path, model_module, guide_module, extra={"trainer": trainer_state},
              model_state=best["model"], guide_state=best["guide"])


def _resume(path, settings, model_module, guide_module, state, generator, device):
    payload = ckpt.read(path)
    trainer = payload["extra"].get("trainer")
    if trainer is None:
        raise ZooInputError(f"checkpoint {path} holds no trainer state: it cannot be resumed")
    saved = trainer["settings"]
    diff = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in settings.items()
            if saved.get(k) != v]
    if diff:
        raise ZooInputError(
            f"resume from {path}: the settings differ from the saved run ({'; '.join(diff)}); "
            "an exact resume needs the same ones (start a new run to change them)"
        )
    ckpt.load_state(model_module, payload["model"], path, "model")  # checks class and config
    if guide_module is not None and payload["guide"] is not None:
        ckpt.load_state(guide_module, payload["guide"], path, "guide")
    best = {
        "epoch": trainer["best_epoch"],
        "val": trainer["best_val"] if trainer["best_val"] is not None else -math.inf,
        "model": _state_dict_cpu(model_module),
        "guide": _state_dict_cpu(guide_module),
    }
    _load_weights(model_module, trainer["model_state"])
    _load_weights(guide_module, trainer["guide_state"])
    state.optimizer.load_state_dict(trainer["optimizer"])
    _set_rng_state(trainer["rng"], generator, device)
    history = History.from_dict(trainer["history"])
    return trainer["epoch"], history, best, trainer["bad_epochs"]

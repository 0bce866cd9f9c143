"""Speed of one SVI step of the speech VAE: Pyro against plain PyTorch, same ELBO, same networks.

    python benchmarks/speed.py                 # writes benchmarks/results/speed.md
    python benchmarks/speed.py --device cuda   # on a GPU (times include a synchronize)

Every variant trains the same SpeechVAE (decoder 16 -> 128 -> 513, encoder 513 -> 128 -> 16,
tanh, identical initial weights) on the same batch of 128 frames x 513 bins with the same
optimizer (Pyro's ClippedAdam, lr 1e-3), one reparameterized sample per frame:

* ``torch``: the ELBO written by hand in PyTorch (the reference);
* ``zoo fit step``: the step ``zoo.train.fit`` runs (``Trace_ELBO.differentiable_loss`` on the
  model and guide modules, per-frame scaling, torch optimizer);
* ``zoo fit step, validation off``: the same inside ``pyro.validation_enabled(False)`` (no
  argument / support checks of the distributions: what ``pyro.enable_validation(False)`` buys);
* ``zoo fit step + JIT``: ``fit(..., loss=JitTrace_ELBO())``;
* ``pyro SVI``: ``pyro.infer.SVI`` with ``Trace_ELBO`` and ``pyro.optim.ClippedAdam``;
* ``pyro SVI + JIT``: the same with ``JitTrace_ELBO`` (the data passed positionally).

Variants run interleaved (blocks of steps, in rotating order, several rounds) so that load
changes on the machine hit them alike; the figure is the median time of a step, in CPU time of
the (single) torch thread on CPU, wall time with synchronization on CUDA. With
``--profile`` (automatic when the zoo step is slower than 1.2x torch), a cProfile of the zoo step
says where the extra time goes, grouped by package.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import os
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def make_modules(seed: int = 0):
    from zoo.vae import SpeechVAE

    torch.manual_seed(seed)
    model = SpeechVAE()
    return model, model.default_guide()


def make_batch(n_frames: int, seed: int = 1) -> torch.Tensor:
    """Power spectra with a speech-like dynamic range: exponential around a random envelope."""
    generator = torch.Generator().manual_seed(seed)
    log_envelope = torch.randn(n_frames, 1, generator=generator) * 2 + torch.linspace(2, -6, 513)
    noise = torch.empty(n_frames, 513).exponential_(generator=generator)
    return log_envelope.exp() * noise


# ----------------------------------------------------------------------------- the variants
class Variant:
    """One way of taking the step; ``context()`` is entered around every block of steps."""

    name = ""

    def __init__(self, model, guide):
        self.modules = (model, guide)
        self.initial = [p.detach().clone() for m in self.modules for p in m.parameters()]

    def context(self):
        return contextlib.nullcontext()

    def trained_everything(self) -> bool:
        """Whether every parameter moved (the step really trains model and guide)."""
        now = [p.detach() for m in self.modules for p in m.parameters()]
        return all(not torch.equal(a, b) for a, b in zip(self.initial, now))


class TorchStep(Variant):
    """The speech-VAE ELBO by hand: encoder, reparameterized z, IS likelihood, MC KL."""

    name = "torch"

    def __init__(self, model, guide, x, lr):
        from pyro.optim.clipped_adam import ClippedAdam

        super().__init__(model, guide)
        self.decoder, self.encoder = model.decoder, guide
        self.x = x
        self.optimizer = ClippedAdam(list(self.decoder.parameters()) + list(guide.parameters()),
                                     lr=lr)
        self.standard = torch.distributions.Normal(torch.zeros((), device=x.device), 1.0)

    def __call__(self):
        x = self.x
        loc, scale = self.encoder.head(self.encoder.body(torch.log(x + self.encoder.eps)))
        posterior = torch.distributions.Normal(loc, scale)
        z = posterior.rsample()
        log_sigma2 = self.decoder(z)
        log_px = -(log_sigma2 + x * torch.exp(-log_sigma2)).sum(-1)
        log_pz = self.standard.log_prob(z).sum(-1)
        log_qz = posterior.log_prob(z).sum(-1)
        loss = -(log_px + log_pz - log_qz).mean()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


class ZooStep(Variant):
    """What zoo.train.fit does for one batch (optionally without Pyro's argument validation),
    in a param-store scope of its own as in fit."""

    def __init__(self, model, guide, x, lr, validate: bool = True, jit: bool = False):
        import pyro
        from pyro.infer import JitTrace_ELBO, Trace_ELBO
        from pyro.optim.clipped_adam import ClippedAdam

        from zoo.train import _Batches, _Caller, _Trainer

        super().__init__(model, guide)
        self.name = "zoo fit step" + (" + JIT" if jit else "") + \
            ("" if validate else ", validation off")
        self.validate = validate
        self.x = {"x": x}
        self.index = torch.arange(len(x), device=x.device)
        self.store = pyro.get_param_store()
        self.state = {"params": {}, "constraints": {}}
        batches = _Batches(self.x, None, False, torch.Generator(), x.device, 0, "x")
        with self.context():
            self.trainer = _Trainer(
                model, _Caller(model.model, "model"), guide, _Caller(guide, "guide"),
                [model, guide], JitTrace_ELBO(ignore_jit_warnings=True) if jit else Trace_ELBO(),
                ClippedAdam, lr, 1.0, 0, batches, x.device,
            )

    def context(self):
        import pyro

        stack = contextlib.ExitStack()
        stack.enter_context(self.store.scope(self.state))
        stack.enter_context(pyro.validation_enabled(self.validate))
        return stack

    def __call__(self):
        return self.trainer.step(self.x, self.index, 1.0)


class SviStep(Variant):
    """pyro.infer.SVI, in a param-store scope of its own."""

    def __init__(self, model, guide, x, lr, jit: bool):
        import pyro
        from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO

        super().__init__(model, guide)
        self.name = "pyro SVI + JIT" if jit else "pyro SVI"
        self.x = x
        self.store = pyro.get_param_store()
        self.state = {"params": {}, "constraints": {}}
        loss = JitTrace_ELBO(ignore_jit_warnings=True) if jit else Trace_ELBO()
        self.svi = SVI(model.model, guide, pyro.optim.ClippedAdam({"lr": lr}), loss)

    def context(self):
        return self.store.scope(self.state)

    def __call__(self):
        return self.svi.step(self.x) / len(self.x)  # SVI reports the sum over frames


# ----------------------------------------------------------------------------- measuring
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(steps, rounds: int, block: int, device) -> dict:
    """Per-step times (s) of each variant, measured in rotating blocks.

    On CPU the clock is the thread's CPU time (with one torch thread all work runs on it), so
    other processes competing for the cores do not count; on CUDA it is wall time around a
    synchronize."""
    clock = time.perf_counter if device.type == "cuda" else time.thread_time
    times = {step.name: [] for step in steps}
    for r in range(rounds):
        order = steps[r % len(steps):] + steps[: r % len(steps)]
        for step in order:
            with step.context():
                for _ in range(block):
                    sync(device)
                    start = clock()
                    step()
                    sync(device)
                    times[step.name].append(clock() - start)
    return times


def profile_by_package(step, n_steps: int) -> list[tuple[str, float]]:
    """Share of the step's time by package (cProfile tottime)."""
    profiler = cProfile.Profile()
    with step.context():
        profiler.enable()
        for _ in range(n_steps):
            step()
        profiler.disable()
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = {}
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():
        if "site-packages/pyro/" in filename:
            key = "pyro (Python)"
        elif "site-packages/torch/" in filename:
            key = "torch (Python wrappers)"
        elif filename == "~":
            key = "torch kernels (C++ calls)" if "torch" in function or "method" in function \
                else "builtins"
        elif "/zoo/" in filename or "/guides/" in filename:
            key = "zoo (Python)"
        else:
            key = "other Python"
        groups[key] = groups.get(key, 0.0) + tottime
    total = sum(groups.values())
    return sorted(((k, v / total) for k, v in groups.items()), key=lambda kv: -kv[1])


def machine(device) -> str:
    import pyro

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu})"
    return (f"{where}; {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"pyro {pyro.__version__}")


VARIANTS = (
    (TorchStep, {}),
    (ZooStep, {}),
    (ZooStep, {"validate": False}),
    (ZooStep, {"jit": True}),
    (SviStep, {"jit": False}),
    (SviStep, {"jit": True}),
)


def measure(n_frames: int, rounds: int, block: int, device, lr: float):
    """Median step time (s) and first loss (per frame) of every variant; and the variants."""
    x = make_batch(n_frames).to(device)
    base_model, base_guide = make_modules()
    variants = []
    for cls, kwargs in VARIANTS:
        model, guide = copy.deepcopy(base_model).to(device), copy.deepcopy(base_guide).to(device)
        variants.append(cls(model, guide, x, lr, **kwargs))
    first_losses = {}
    for step in variants:  # warm-up (and JIT compilation)
        with step.context():
            first_losses[step.name] = step()
            for _ in range(5):
                step()
    times = interleaved(variants, rounds, block, device)
    untrained = [step.name for step in variants if not step.trained_everything()]
    if untrained:
        raise RuntimeError(f"these variants did not train every parameter: {untrained}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    return medians, first_losses, variants


def main(argv=None):
    from zoo.config import quick

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--frames", type=int, default=128, help="batch size of the target")
    parser.add_argument("--more-frames", type=int, nargs="*", default=quick([1024], []),
                        help="further batch sizes, to see which costs are per step")
    parser.add_argument("--rounds", type=int, default=quick(30, 3))
    parser.add_argument("--block", type=int, default=quick(20, 5))
    parser.add_argument("--profile", action="store_true", help="profile the zoo step anyway")
    parser.add_argument("--out", default=str(HERE / "results" / "speed.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lr = 1e-3

    medians, first_losses, variants = measure(args.frames, args.rounds, args.block, device, lr)
    more = {n: measure(n, max(1, args.rounds // 3), args.block, device, lr)[0]
            for n in args.more_frames}
    reference = medians["torch"]

    command = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = "| variant | ms / step | vs torch | extra ms over torch | first loss (per frame) |"
    rule = "|---|---:|---:|---:|---:|"
    for n in more:
        header += f" ms / step ({n} frames) | vs torch ({n}) | extra ms ({n}) |"
        rule += "---:|---:|---:|"
    lines = [
        "# Speed: one SVI step of the speech VAE, Pyro vs plain PyTorch",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {machine(device)}",
        "",
        f"SpeechVAE 513 -> 128 -> 16 (tanh), batch of {args.frames} frames x 513 bins, "
        f"ClippedAdam lr {lr}, one sample per frame. Interleaved: {args.rounds} rounds x "
        f"{args.block} steps per variant, rotating order; median time per step, "
        + ("wall time with CUDA synchronize." if device.type == "cuda" else
           "CPU time of the thread (one torch thread), so other load on a shared machine does "
           "not count."),
        "",
        header,
        rule,
    ]
    for name, median in medians.items():
        row = (f"| {name} | {1e3 * median:.3f} | {median / reference:.2f}x | "
               f"{1e3 * (median - reference):+.2f} | {first_losses[name]:.1f} |")
        for results in more.values():
            row += (f" {1e3 * results[name]:.3f} | {results[name] / results['torch']:.2f}x | "
                    f"{1e3 * (results[name] - results['torch']):+.2f} |")
        lines.append(row)
    zoo_ratio = medians["zoo fit step"] / reference
    jit_ratio = medians["zoo fit step + JIT"] / reference
    lines += ["", f"Target: Pyro within 1.2x of plain PyTorch per step ({args.frames} frames). "
              f"Default zoo step (Trace_ELBO): {'met' if zoo_ratio <= 1.2 else 'NOT met'} "
              f"({zoo_ratio:.2f}x); with JitTrace_ELBO: "
              f"{'met' if jit_ratio <= 1.2 else 'NOT met'} ({jit_ratio:.2f}x). The 'validation "
              "off' row prices Pyro's argument and support checks (they grow with the batch); "
              "the JIT rows, what running Pyro's effect handlers in Python at every step costs "
              "(JIT traces them once). Every variant is checked to train every parameter."]
    if args.profile or zoo_ratio > 1.2:  # profile the default (eager) step
        zoo_step = next(step for step in variants if step.name == "zoo fit step")
        shares = profile_by_package(zoo_step, quick(200, 20))
        torch_shares = profile_by_package(variants[0], quick(200, 20))
        lines += ["", f"Where the zoo step's time goes ({args.frames} frames; cProfile self "
                  "time by package, the profiler inflates Python-call costs):", "",
                  "| package | zoo step | torch step |", "|---|---:|---:|"]
        torch_map = dict(torch_shares)
        for key, share in shares:
            lines.append(f"| {key} | {100 * share:.0f} % | {100 * torch_map.get(key, 0):.0f} % |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return medians


if __name__ == "__main__":
    main()

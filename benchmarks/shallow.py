"""Shallow-model figures: zoo EM against scikit-learn's GaussianMixture, and SVI steps to EM's optimum.

    python benchmarks/shallow.py            # full run (a few minutes), writes results/shallow.md
    python benchmarks/shallow.py --quick    # small sizes, for a smoke test

EM: both fit the same float64 data from the same k-means++ start (scikit-learn warm-started
from it, so neither pays for initialisation), with the same tolerance (change of the average
log-likelihood below ``tol``, scikit-learn's criterion) and iteration cap. Times are wall-clock
medians of ``--repeats`` runs, the two libraries alternating, with ``--threads`` threads each
(torch intra-op threads; OpenBLAS threads through threadpoolctl). Other work may share the
machine: the ratio of times measured side by side is the figure to read, not the seconds.

SVI: ``GaussianMixture.fit_svi`` (``TraceEnum_ELBO``, Adam) from the same rough start as EM
(k-means++ seeds, the data covariance for every component, equal weights), counting the
steps until the ELBO per point, which equals the log-likelihood per point here, comes within
0.05 and 0.005 nats of EM's final value.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.gmm import (  # noqa: E402
    GaussianMixture,
    MixtureParameters,
    expectation_maximization,
    kmeans_plusplus,
    kmeans_plusplus_parameters,
)

# (N, K, d, covariance type)
EM_SIZES = [
    (1_000, 4, 2, "full"),
    (10_000, 8, 16, "full"),
    (100_000, 8, 16, "full"),
    (100_000, 32, 2, "full"),
    (10_000, 32, 64, "full"),
    (100_000, 32, 16, "full"),
    (100_000, 32, 64, "diag"),
    (100_000, 16, 2, "spherical"),
]
EM_SIZES_QUICK = [(1_000, 4, 2, "full"), (5_000, 8, 8, "full"), (5_000, 8, 8, "diag")]
SVI_SIZES = [(1_000, 4, 2), (10_000, 4, 2), (2_000, 8, 8)]
SVI_SIZES_QUICK = [(1_000, 4, 2)]


def mixture_data(n_points: int, n_components: int, dim: int, spread: float = 1.0,
                 seed: int = 0) -> torch.Tensor:
    """Float64 points from a random mixture whose clusters overlap, so EM needs some tens of
    iterations: means ``~ N(0, spread^2 I)``, covariances ``F_k F_k^T + I / 4`` with random
    ``F_k`` (entries of variance ``1 / d``)."""
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(n_components, dim, generator=g, dtype=torch.float64)
    factors = torch.randn(n_components, dim, dim, generator=g, dtype=torch.float64) / dim**0.5
    labels = torch.randint(n_components, (n_points,), generator=g)
    shared = torch.randn(n_points, dim, 1, generator=g, dtype=torch.float64)
    isotropic = 0.5 * torch.randn(n_points, dim, generator=g, dtype=torch.float64)
    return means[labels] + (factors[labels] @ shared).squeeze(-1) + isotropic


def sklearn_warm_started(start: MixtureParameters, tol: float, max_iter: int):
    """An unfitted scikit-learn mixture whose next ``fit`` runs EM from ``start`` directly."""
    model = SklearnGaussianMixture(len(start.weights), covariance_type=start.covariance_type,
                                   tol=tol, max_iter=max_iter, warm_start=True)
    covariances = start.covariances.numpy()
    if start.covariance_type == "full":
        chol = np.linalg.cholesky(covariances)
        eye = np.eye(covariances.shape[-1])
        precisions_cholesky = np.linalg.solve(chol, eye).transpose(0, 2, 1)
    else:
        precisions_cholesky = 1.0 / np.sqrt(covariances)
    model.weights_ = start.weights.numpy().copy()
    model.means_ = start.locs.numpy().copy()
    model.covariances_ = covariances.copy()
    model.precisions_cholesky_ = precisions_cholesky
    model.converged_ = False
    model.lower_bound_ = -np.inf
    return model


def bench_em(sizes, repeats: int, tol: float, max_iter: int) -> list[dict]:
    # warm-up: first calls pay for lazy library initialisation, which is not EM
    warm_x = mixture_data(500, 2, 2)
    warm_start = kmeans_plusplus_parameters(warm_x, 2, seed=0)
    expectation_maximization(warm_x, 2, init=warm_start)
    sklearn_warm_started(warm_start, tol, max_iter).fit(warm_x.numpy())
    rows = []
    for n_points, n_components, dim, covariance_type in sizes:
        x = mixture_data(n_points, n_components, dim)
        x_np = x.numpy()
        start = kmeans_plusplus_parameters(x, n_components, covariance_type, seed=0)
        zoo_times, sk_times = [], []
        for repeat in range(repeats):
            order = ("zoo", "sklearn") if repeat % 2 == 0 else ("sklearn", "zoo")
            for who in order:
                if who == "zoo":
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():  # collapse is counted in the table instead
                        warnings.simplefilter("ignore")
                        ours = expectation_maximization(x, n_components, covariance_type,
                                                        init=start, tol=tol, max_iter=max_iter)
                    zoo_times.append(time.perf_counter() - t0)
                else:
                    theirs = sklearn_warm_started(start, tol, max_iter)
                    t0 = time.perf_counter()
                    theirs.fit(x_np)
                    sk_times.append(time.perf_counter() - t0)
        zoo_s, sk_s = statistics.median(zoo_times), statistics.median(sk_times)
        row = dict(N=n_points, K=n_components, d=dim, cov=covariance_type,
                   zoo_iter=ours.n_iter, sk_iter=theirs.n_iter_,
                   zoo_ll=ours.final_log_likelihood, sk_ll=float(theirs.score(x_np)),
                   zoo_s=zoo_s, sk_s=sk_s, ratio=zoo_s / sk_s, collapsed=len(ours.collapsed))
        print(row, flush=True)
        rows.append(row)
    return rows


def rough_start(x: torch.Tensor, n_components: int) -> MixtureParameters:
    """k-means++ seeds as means, the data covariance for every component, equal weights: a
    start both EM and SVI need many steps from."""
    seeds = x[kmeans_plusplus(x, n_components, torch.Generator().manual_seed(0))]
    covariance = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
    return MixtureParameters(torch.full((n_components,), 1.0 / n_components, dtype=x.dtype),
                             seeds, covariance.expand(n_components, -1, -1).clone())


def bench_svi(sizes, max_steps: int, lr: float) -> list[dict]:
    rows = []
    for n_points, n_components, dim in sizes:
        x = mixture_data(n_points, n_components, dim, seed=1)
        start = rough_start(x, n_components)
        t0 = time.perf_counter()
        em = expectation_maximization(x, n_components, "full", init=start)
        em_s = time.perf_counter() - t0
        model = GaussianMixture(n_components, dim, "full").set_parameters(start)
        t0 = time.perf_counter()
        history = model.fit_svi(x, steps=max_steps, lr=lr, seed=0)
        svi_s = time.perf_counter() - t0
        target = em.final_log_likelihood

        def steps_to(gap, history=history, target=target):
            return next((step for step, value in enumerate(history) if value >= target - gap),
                        None)

        row = dict(N=n_points, K=n_components, d=dim, em_iter=em.n_iter, em_ll=target,
                   em_s=em_s, start_ll=history[0], best_elbo=max(history),
                   steps_005=steps_to(0.05), steps_0005=steps_to(0.005),
                   ms_per_step=1e3 * svi_s / max_steps, max_steps=max_steps)
        print(row, flush=True)
        rows.append(row)
    return rows


def report(em_rows, svi_rows, args, wall_s: float) -> str:
    def fmt_steps(value, limit):
        return f">{limit}" if value is None else str(value)

    lines = [
        "# Shallow models: EM against scikit-learn, SVI against EM",
        "",
        f"`python benchmarks/shallow.py{' --quick' if args.quick else ''} --threads "
        f"{args.threads} --repeats {args.repeats}` ({wall_s / 60:.1f} min). "
        f"{platform.processor() or platform.machine()}, {args.threads} threads each, "
        f"torch {torch.__version__} (MKL), scikit-learn {sklearn.__version__} (OpenBLAS), "
        "float64, CPU. Other work shared this machine while it ran: read the ratios, which were "
        "measured side by side (interleaved runs, median), rather than the seconds.",
        "",
        f"## EM (same data, same k-means++ start, tol={args.tol} on the change of the average "
        f"log-likelihood, at most {args.max_iter} iterations)",
        "",
        "| N | K | d | covariance | iterations zoo / sklearn | final log-lik per point zoo "
        "| sklearn | zoo time (s) | sklearn time (s) | zoo / sklearn time | collapsed (zoo) |",
        "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in em_rows:
        lines.append(
            f"| {r['N']:,} | {r['K']} | {r['d']} | {r['cov']} | {r['zoo_iter']} / {r['sk_iter']} "
            f"| {r['zoo_ll']:.6f} | {r['sk_ll']:.6f} | {r['zoo_s']:.3f} | {r['sk_s']:.3f} "
            f"| **{r['ratio']:.2f}x** | {r['collapsed']} |")
    lines += [
        "",
        "\"collapsed\": components whose covariance reached the floor `reg_covar` (or that "
        "explain under one point), which the zoo reports (a warning and `EMResult.collapsed`); "
        "with 32 full 64-d covariances on 10,000 points some component can hold too few points "
        "for a full-rank covariance. Both libraries apply the same floor.",
        "",
        f"## SVI (`TraceEnum_ELBO`, Adam lr={args.lr}, full batch, full covariances) from the "
        "same rough start as EM (k-means++ seeds, data covariance, equal weights)",
        "",
        "The ELBO of the enumerated model is the exact log-likelihood, so SVI and EM climb the "
        "same surface; the table counts the Adam steps SVI needs to come within 0.05 and 0.005 "
        "nats per point of EM's final value.",
        "",
        "| N | K | d | EM iterations | EM time (s) | EM log-lik per point | SVI start "
        "| best SVI ELBO | steps to EM - 0.05 | steps to EM - 0.005 | ms per SVI step |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in svi_rows:
        lines.append(
            f"| {r['N']:,} | {r['K']} | {r['d']} | {r['em_iter']} | {r['em_s']:.3f} "
            f"| {r['em_ll']:.4f} | {r['start_ll']:.4f} | {r['best_elbo']:.4f} "
            f"| {fmt_steps(r['steps_005'], r['max_steps'])} "
            f"| {fmt_steps(r['steps_0005'], r['max_steps'])} | {r['ms_per_step']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats")
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate for SVI")
    parser.add_argument("--svi-steps", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "shallow.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    with threadpool_limits(limits=args.threads):
        em_rows = bench_em(EM_SIZES_QUICK if args.quick else EM_SIZES, args.repeats, args.tol,
                           args.max_iter)
        svi_rows = bench_svi(SVI_SIZES_QUICK if args.quick else SVI_SIZES,
                             300 if args.quick else args.svi_steps, args.lr)
    text = report(em_rows, svi_rows, args, time.perf_counter() - t0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

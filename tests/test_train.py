"""The one SVI trainer: reproducibility, exact resume, KL warm-up, validation and early stopping,
checkpoints, NaN diagnosis, parameter hygiene, and the calling convention for any model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import (
    JitTrace_ELBO,
    JitTraceGraph_ELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    config_enumerate,
)
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule
from torch import nn
from torch.utils.data import Dataset

import zoo
from guides import MeanField
from zoo import checkpoint
from zoo.data.stft import STFT
from zoo.errors import ZooInputError
from zoo.train import NonFiniteLossError, evaluate, fit, scale_latents
from zoo.vae import SpeechVAE

SMALL_STFT = STFT(n_fft=30, hop_length=8)  # 16 frequency bins


def small_vae(seed=0):
    torch.manual_seed(seed)
    return SpeechVAE(n_freq=16, hidden=(8,), latent_dim=2, stft=SMALL_STFT)


@pytest.fixture(scope="module")
def spectra():
    """Power spectra from a random SpeechVAE: 200 training and 64 validation frames."""
    teacher = small_vae(seed=100)
    with torch.no_grad():
        return teacher.model(batch_shape=(200,)), teacher.model(batch_shape=(64,))


class OnTheFly(Dataset):
    """A Dataset of dicts that is not tensor-backed, so fit goes through a DataLoader."""

    def __init__(self, x):
        self._frames = x

    def __len__(self):
        return len(self._frames)

    def __getitem__(self, i):
        return {"x": self._frames[i].clone()}


def params_of(*modules):
    return [p.detach().clone() for m in modules for p in m.parameters()]


def assert_same(a, b):
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def history_numbers(history):
    values = history.to_dict()
    values.pop("epoch_seconds")
    return values


# ----------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("kind", ["tensors", "dataset"])
def test_seed_reproduces_a_run_bit_for_bit(spectra, kind):
    train, val = spectra
    data = {"x": train} if kind == "tensors" else OnTheFly(train)
    runs = []
    for _ in range(2):
        model = small_vae()
        guide = model.default_guide()
        history = fit(model, guide, data, {"x": val}, epochs=3, batch_size=64, lr=1e-2,
                      kl_warmup_epochs=2, seed=7, progress=False, device="cpu")
        runs.append((params_of(model, guide), history_numbers(history)))
    assert_same(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    other_seed = small_vae()
    fit(other_seed, other_seed.default_guide(), data, epochs=1, batch_size=64, lr=1e-2,
        seed=8, progress=False, device="cpu")
    assert not torch.equal(params_of(other_seed)[0], params_of(model)[0])


@pytest.mark.parametrize("kind", ["tensors", "dataset"])
def test_resume_equals_uninterrupted_training_bit_for_bit(spectra, tmp_path, kind):
    train, val = spectra
    data = {"x": train} if kind == "tensors" else OnTheFly(train)
    settings = dict(batch_size=64, lr=1e-2, kl_warmup_epochs=3, seed=5, progress=False,
                    device="cpu")

    straight = small_vae()
    straight_guide = straight.default_guide()
    full = fit(straight, straight_guide, data, {"x": val}, epochs=5,
               checkpoint=tmp_path / "straight.pt", **settings)

    first = small_vae()
    fit(first, first.default_guide(), data, {"x": val}, epochs=2,
        checkpoint=tmp_path / "broken.pt", **settings)
    resumed = small_vae(seed=99)  # a fresh process would start from other weights
    resumed_guide = resumed.default_guide()
    rest = fit(resumed, resumed_guide, data, {"x": val}, epochs=5,
               checkpoint=tmp_path / "broken.pt", resume=True, **settings)

    assert history_numbers(rest) == history_numbers(full)
    assert_same(params_of(resumed, resumed_guide), params_of(straight, straight_guide))
    last = [checkpoint.read(tmp_path / name)["extra"]["trainer"]
            for name in ("straight.pt", "broken.pt")]
    for key in ("model_state", "guide_state"):
        assert_same(list(last[0][key].values()), list(last[1][key].values()))


def test_resume_needs_the_same_settings_and_an_existing_file(spectra, tmp_path):
    train, _ = spectra
    model = small_vae()
    fit(model, model.default_guide(), {"x": train}, epochs=1, lr=1e-2, progress=False,
        checkpoint=tmp_path / "run.pt", device="cpu")
    with pytest.raises(ZooInputError, match=r"lr: saved 0.01, now 0.001"):
        fit(model, model.default_guide(), {"x": train}, epochs=2, lr=1e-3, progress=False,
            checkpoint=tmp_path / "run.pt", resume=True, device="cpu")
    with pytest.raises(ZooInputError, match="does not exist"):
        fit(model, model.default_guide(), {"x": train}, epochs=2, lr=1e-2, progress=False,
            checkpoint=tmp_path / "other.pt", resume=True, device="cpu")


# ----------------------------------------------------------------------------- KL warm-up
def test_scale_latents_scales_the_latent_sites_only():
    model = small_vae()
    x = torch.rand(4, 16)
    trace = poutine.trace(scale_latents(model.model, ("z",), 0.25)).get_trace(x)
    assert trace.nodes["z"]["scale"] == 0.25 and trace.nodes["x"]["scale"] == 1.0

    def sequence():
        for t in range(3):
            pyro.sample(f"z_{t}", dist.Normal(0.0, 1.0))
        pyro.sample("zeta", dist.Normal(0.0, 1.0))

    trace = poutine.trace(scale_latents(sequence, ("z",), 0.5)).get_trace()
    assert [trace.nodes[n]["scale"] for n in ("z_0", "z_1", "z_2", "zeta")] == [0.5] * 3 + [1.0]


def test_kl_warmup_ramps_beta_linearly(spectra):
    train, _ = spectra
    model = small_vae()
    history = fit(model, model.default_guide(), {"x": train}, epochs=5, lr=1e-2, beta=0.5,
                  kl_warmup_epochs=3, progress=False, device="cpu")
    assert history.beta == pytest.approx([0.5 / 3, 1.0 / 3, 0.5, 0.5, 0.5])


def test_beta_with_a_guide_sampling_other_sites_is_refused(spectra):
    train, _ = spectra

    class ExtraSite(PyroModule):
        def __init__(self, guide):
            super().__init__()
            self.inner = guide

        def forward(self, x):
            pyro.sample("extra", dist.Normal(0.0, 1.0))
            return self.inner(x)

    model = small_vae()
    with pytest.raises(ZooInputError, match=r"also samples \['extra'\]"):
        fit(model, ExtraSite(model.default_guide()), {"x": train}, epochs=1, lr=1e-2,
            kl_warmup_epochs=2, progress=False, device="cpu")


# ----------------------------------------------------------------------------- validation
def test_validation_elbo_per_data_point_and_per_frame(spectra):
    train, val = spectra
    model = small_vae()
    guide = model.default_guide()
    history = fit(model, guide, {"x": train}, {"x": val}, epochs=3, batch_size=50, lr=1e-2,
                  progress=False, device="cpu")
    assert len(history.val_elbo) == len(history.val_elbo_per_frame) == 3
    assert history.val_elbo == history.val_elbo_per_frame  # one frame per data point here
    scores = evaluate(model, guide, {"x": val}, batch_size=50, seed=1)  # fit's seed + 1
    assert scores["n_items"] == scores["n_frames"] == 64
    # fit ends with the best weights
    assert scores["elbo"] == pytest.approx(history.val_elbo[history.best_epoch - 1], abs=1e-6)


class MaskedSequenceModel(PyroModule):
    """Sequences of ``x_t`` with a learned mean, one latent per step: sites ``z_t`` / ``x_t``."""

    latent_sites = ("z",)
    observed_sites = ("x",)

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(1, 2)

    def model(self, x, mask):
        with pyro.plate("sequences", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                with poutine.mask(mask=mask[:, t]):
                    z = pyro.sample(f"z_{t}", dist.Normal(torch.zeros(x.shape[0], 1), 1.0)
                                    .to_event(1))
                    pyro.sample(f"x_{t}", dist.Normal(self.net(z), 1.0).to_event(1),
                                obs=x[:, t])


class MaskedSequenceGuide(PyroModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 2)

    def forward(self, x, mask):
        with pyro.plate("sequences", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                with poutine.mask(mask=mask[:, t]):
                    loc, raw = self.net(x[:, t]).unbind(-1)
                    pyro.sample(f"z_{t}", dist.Normal(loc.unsqueeze(-1), raw.exp().unsqueeze(-1))
                                .to_event(1))


def test_per_frame_elbo_counts_observed_unmasked_frames_of_sequences():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 2)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    model, guide = MaskedSequenceModel(), MaskedSequenceGuide()
    scores = evaluate(model, guide, {"x": x, "mask": mask})
    assert scores["n_items"] == 3 and scores["n_frames"] == 7
    assert scores["elbo_per_frame"] == pytest.approx(scores["elbo"] * 3 / 7)
    history = fit(model, guide, {"x": x, "mask": mask}, epochs=3, lr=1e-2, kl_warmup_epochs=2,
                  progress=False, device="cpu")
    assert all(math.isfinite(v) for v in history.train_elbo)


def test_early_stopping_when_the_validation_elbo_stops_improving(spectra):
    """SGD with a vanishing step leaves the weights (and the validation ELBO) unchanged: the
    first epoch stays the best and training stops after `patience` more."""
    train, val = spectra
    model = small_vae()
    history = fit(model, model.default_guide(), {"x": train}, {"x": val}, epochs=20, lr=1e-30,
                  optimizer=torch.optim.SGD, patience=2, progress=False, device="cpu")
    assert history.epoch == [1, 2, 3] and history.stopped_early and history.best_epoch == 1


def test_checkpoint_holds_the_best_model_and_fit_ends_with_it(spectra, tmp_path):
    train, val = spectra
    model = small_vae()
    guide = model.default_guide()
    history = fit(model, guide, {"x": train}, {"x": val}, epochs=4, batch_size=50, lr=3e-2,
                  checkpoint=tmp_path / "best.pt", progress=False, device="cpu")
    assert history.best_epoch == 1 + max(range(4), key=lambda e: history.val_elbo[e])
    loaded = zoo.load(tmp_path / "best.pt", device="cpu")
    assert_same(params_of(loaded), params_of(model))
    stored = checkpoint.read(tmp_path / "best.pt")
    assert stored["extra"]["trainer"]["best_epoch"] == history.best_epoch
    if history.best_epoch != 4:  # the latest weights are kept apart for resuming
        latest = list(stored["extra"]["trainer"]["model_state"].values())
        assert not all(torch.equal(a, b) for a, b in zip(latest, params_of(model)))


# ----------------------------------------------------------------------------- NaN diagnosis
def test_non_finite_loss_names_the_site_and_the_parameter(spectra):
    train, _ = spectra
    model = small_vae()
    with torch.no_grad():
        model.decoder[-1].bias[3] = float("nan")
    with pytest.raises(NonFiniteLossError) as error:
        fit(model, model.default_guide(), {"x": train}, epochs=1, lr=1e-2, progress=False,
            device="cpu")
    message = str(error.value)
    assert "before training" in message and "model site 'x' has a NaN/Inf log_prob" in message
    assert "parameter SpeechVAE.decoder.2.bias is NaN/Inf" in message


def test_non_finite_data_is_named(spectra):
    train, _ = spectra
    bad = train.clone()
    bad[5, 2] = float("inf")
    model = small_vae()
    with pytest.raises(NonFiniteLossError) as error:
        fit(model, model.default_guide(), {"x": bad}, epochs=1, lr=1e-2, progress=False,
            device="cpu")
    message = str(error.value)
    assert "epoch 1, batch 1: the loss is" in message
    assert "data entry 'x' has NaN/Inf values" in message
    assert "model site 'x' has a NaN/Inf value" in message


# ----------------------------------------------------------------------------- parameters
def test_rerunning_fit_ignores_stale_parameters_in_pyros_global_store(spectra):
    """As re-running a notebook cell: an earlier model and AutoNormal guide with the same
    parameter names left in the global store change nothing, and the store is left as it was."""
    train, _ = spectra

    def run():
        model = small_vae()
        guide = AutoNormal(model)
        fit(model, guide, {"x": train[:40]}, epochs=3, lr=1e-2, seed=1, progress=False,
            device="cpu")
        return params_of(model, guide)

    pyro.clear_param_store()
    clean = run()
    stale_model = small_vae(seed=123)
    stale_guide = AutoNormal(stale_model)
    stale_guide(train[:40])  # registers the stale parameters in the global store
    poutine.trace(stale_model).get_trace(train[:40])
    with torch.no_grad():
        for name in list(pyro.get_param_store().keys()):
            pyro.get_param_store()[name] = torch.full_like(pyro.param(name), 7.0)
    names_before = set(pyro.get_param_store().keys())
    assert "AutoNormal.locs.z" in names_before
    assert_same(run(), clean)
    assert set(pyro.get_param_store().keys()) == names_before
    pyro.clear_param_store()


class FrozenOffset(PyroModule):
    """A PyroModule with an nn.Parameter attribute frozen by the user (pyro issue 3438)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae
        self.offset = nn.Parameter(torch.zeros(16), requires_grad=False)

    def model(self, x):
        return self.vae.model(x + self.offset.abs())


def test_frozen_parameters_stay_frozen(spectra):
    train, _ = spectra
    vae = small_vae()
    vae.decoder.requires_grad_(False)
    model = FrozenOffset(vae)
    guide = vae.default_guide()
    frozen_before, guide_before = params_of(model), params_of(guide)
    fit(model, guide, {"x": train}, epochs=2, batch_size=50, lr=1e-2, progress=False,
        device="cpu")
    assert_same(params_of(model), frozen_before)
    assert not any(p.requires_grad for p in model.parameters())
    assert not any(torch.equal(a, b) for a, b in zip(params_of(guide), guide_before))


class Backed(OnTheFly):
    """Tensor-backed like FrameDataset: ``.x`` holds every item."""

    @property
    def x(self):
        return self._frames


def test_tensor_backed_dataset_is_sliced_like_a_dict(spectra):
    train, _ = spectra
    runs = []
    for data in ({"x": train}, Backed(train)):
        model = small_vae()
        guide = model.default_guide()
        fit(model, guide, data, epochs=2, batch_size=64, lr=1e-2, progress=False, device="cpu")
        runs.append(params_of(model, guide))
    assert_same(*runs)


def test_mean_field_receives_the_batch_positions(spectra):
    train, _ = spectra
    model = small_vae()
    model.requires_grad_(False)
    guide = MeanField(len(train), 2)
    before = guide.posterior["loc"].detach().clone()
    fit(model, guide, OnTheFly(train), epochs=2, batch_size=32, lr=1e-1, progress=False,
        device="cpu")
    moved = (guide.posterior["loc"] - before).abs().sum(-1) > 0
    assert moved.all()  # every frame's posterior was trained, through its own index


# ----------------------------------------------------------------------------- other models
class TwoMeans(PyroModule):
    """x_n ~ sum_k pi_k N(mu_k, 1), with the mixing variable summed out by enumeration."""

    observed_sites = ("x",)

    def __init__(self):
        super().__init__()
        self.params = nn.ParameterDict({"logits": nn.Parameter(torch.zeros(2)),
                                        "means": nn.Parameter(torch.tensor([-0.5, 0.5]))})

    @config_enumerate
    def model(self, x):
        params = self.params
        with pyro.plate("frames", x.shape[0]):
            alpha = pyro.sample("alpha", dist.Categorical(logits=params["logits"]))
            pyro.sample("x", dist.Normal(params["means"][alpha], 1.0), obs=x)


def test_trace_enum_elbo_for_discrete_latents():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(150) - 3, torch.randn(50) + 3])
    mixture = TwoMeans()
    history = fit(mixture, lambda x: None, {"x": x}, epochs=150, lr=0.05,
                  loss=TraceEnum_ELBO(max_plate_nesting=1), progress=False, device="cpu")
    exact = torch.logsumexp(
        torch.log_softmax(mixture.params["logits"], 0)
        + dist.Normal(mixture.params["means"], 1.0).log_prob(x[:, None]), -1).mean()
    assert history.train_elbo[-1] == pytest.approx(exact.item(), abs=0.05)  # exact marginal
    means = sorted(mixture.params["means"].tolist())
    assert means[0] == pytest.approx(-3, abs=0.4) and means[1] == pytest.approx(3, abs=0.4)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_jit_elbo_trains_as_the_eager_one(spectra):
    """Same steps, same random numbers: JitTrace_ELBO follows Trace_ELBO (uneven last batch,
    KL warm-up changing beta, validation), and a JIT ELBO object reused for another model trains
    that model (Pyro's JIT ELBO binds the first model it sees; fit works on a copy)."""
    train, val = spectra
    histories = {}
    shared_jit = JitTrace_ELBO(ignore_jit_warnings=True)
    for loss in (Trace_ELBO(), shared_jit):
        model = small_vae()
        history = fit(model, model.default_guide(), {"x": train}, {"x": val}, epochs=3,
                      batch_size=64, lr=1e-2, kl_warmup_epochs=2, loss=loss, progress=False,
                      device="cpu")
        histories[type(loss).__name__] = history
    eager, jit = histories["Trace_ELBO"], histories["JitTrace_ELBO"]
    assert jit.train_elbo == pytest.approx(eager.train_elbo, abs=1e-4)
    assert jit.val_elbo == pytest.approx(eager.val_elbo, abs=1e-4)
    other = small_vae(seed=3)
    before = params_of(other)
    fit(other, other.default_guide(), {"x": train}, epochs=1, batch_size=64, lr=1e-2,
        loss=shared_jit, progress=False, device="cpu")
    assert not any(torch.equal(a, b) for a, b in zip(params_of(other), before))


@pytest.mark.parametrize("optimizer", [pyro.optim.Adam, pyro.optim.ClippedAdam({"lr": 1e-2}),
                                       torch.optim.Adam])
def test_optimizer_choices(spectra, optimizer):
    train, _ = spectra
    model = small_vae()
    history = fit(model, model.default_guide(), {"x": train}, epochs=2, lr=1e-2,
                  optimizer=optimizer, progress=False, device="cpu")
    assert len(history.train_elbo) == 2


# ----------------------------------------------------------------------------- input errors
def test_clear_errors_for_misuse(spectra):
    train, val = spectra
    model = small_vae()
    guide = model.default_guide()
    run = dict(epochs=1, lr=1e-2, progress=False, device="cpu")
    with pytest.raises(ZooInputError, match=r"entries \['v'\] that neither"):
        fit(model, guide, {"x": train, "v": train}, **run)
    with pytest.raises(ZooInputError, match=r"the guide needs arguments \['x'\]"):
        fit(model, guide, {"mask": torch.ones(200, dtype=torch.bool)}, **run)
    with pytest.raises(ZooInputError, match=r"entries \['power'\]"):
        fit(model, guide, {"power": train}, **run)
    with pytest.raises(ZooInputError, match="same length"):
        fit(model, guide, {"x": train, "mask": torch.ones(3, dtype=torch.bool)}, **run)
    with pytest.raises(ZooInputError, match="patience needs val_data"):
        fit(model, guide, {"x": train}, patience=2, **run)
    with pytest.raises(ZooInputError, match="JitTraceGraph_ELBO is not supported"):
        fit(model, guide, {"x": train}, loss=JitTraceGraph_ELBO(), **run)
    with pytest.raises(ZooInputError, match="non-amortized guide"):
        fit(model, MeanField(len(train), 2), {"x": train}, {"x": val}, **run)
    with pytest.raises(ZooInputError, match="AutoNormal keeps one posterior per position"):
        fit(model, AutoNormal(model), {"x": train}, batch_size=64, **run)
    with pytest.raises(ZooInputError, match="lr=0.1 but fit was given lr=0.01"):
        fit(model, guide, {"x": train}, optimizer=pyro.optim.Adam({"lr": 0.1}), **run)
    with pytest.raises(ZooInputError, match="epochs"):
        fit(model, guide, {"x": train}, epochs=0, lr=1e-2)


def test_parameters_in_the_global_store_are_refused(spectra):
    train, _ = spectra
    model = small_vae()

    def guide_with_store_param(x):
        loc = pyro.param("loc", torch.zeros(2))
        with pyro.plate("frames", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    with pytest.raises(ZooInputError, match="'loc' lives in Pyro's global param store"):
        fit(model, guide_with_store_param, {"x": train}, epochs=1, lr=1e-2, progress=False,
            device="cpu")


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_moves_model_guide_and_batches_to_cuda(spectra, tmp_path):
    train, val = spectra
    model = small_vae()
    guide = model.default_guide()
    history = fit(model, guide, OnTheFly(train), {"x": val}, epochs=2, batch_size=64, lr=1e-2,
                  checkpoint=tmp_path / "gpu.pt", progress=False)
    assert all(p.is_cuda for p in list(model.parameters()) + list(guide.parameters()))
    assert all(math.isfinite(v) for v in history.val_elbo)
    assert not next(zoo.load(tmp_path / "gpu.pt", device="cpu").parameters()).is_cuda

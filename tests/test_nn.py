"""The shared network builders and plate helper of zoo.nn."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn

from zoo.errors import ZooInputError
from zoo.nn import GaussianHead, check_features, frame_mask, frame_plates, mlp, rnn


def test_mlp_layers_follow_sizes_with_linear_output():
    net = mlp([513, 128, 16])
    kinds = [type(layer) for layer in net]
    assert kinds == [nn.Linear, nn.Tanh, nn.Linear]
    assert (net[0].in_features, net[0].out_features) == (513, 128)
    assert net(torch.randn(4, 7, 513)).shape == (4, 7, 16)


def test_mlp_out_activation_dropout_and_single_layer():
    net = mlp([3, 5, 2], activation="relu", out_activation="tanh", dropout=0.1)
    assert [type(layer) for layer in net] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.Tanh]
    assert [type(layer) for layer in mlp([4, 6])] == [nn.Linear]


@pytest.mark.parametrize("sizes", [[5], [5, 0, 3], []])
def test_mlp_rejects_bad_sizes(sizes):
    with pytest.raises(ZooInputError, match="sizes"):
        mlp(sizes)


def test_mlp_rejects_unknown_activation():
    with pytest.raises(ZooInputError, match="activation"):
        mlp([2, 3], activation="swishy")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_rnn_is_batch_first_and_doubles_features_when_bidirectional(kind):
    net = rnn(8, 6, num_layers=2, kind=kind, bidirectional=True)
    out, _ = net(torch.randn(3, 11, 8))
    assert out.shape == (3, 11, 12)


def test_rnn_rejects_unknown_kind():
    with pytest.raises(ZooInputError, match="kind"):
        rnn(4, 4, kind="transformer")


def test_gaussian_head_scales_are_positive_even_for_huge_inputs():
    head = GaussianHead(5, 3)
    loc, scale = head(1e4 * torch.randn(10, 5))
    assert loc.shape == scale.shape == (10, 3)
    assert torch.isfinite(scale).all() and (scale > 0).all()


def test_frame_plates_nest_utterances_outside_frames():
    def model():
        with frame_plates((2, 5)):
            pyro.sample("z", dist.Normal(torch.zeros(2, 5, 3), 1.0).to_event(1))

    trace = poutine.trace(model).get_trace()
    frames = {f.name: f.dim for f in trace.nodes["z"]["cond_indep_stack"]}
    assert frames == {"frames": -1, "utterances": -2}
    assert trace.nodes["z"]["fn"].batch_shape == (2, 5)


def test_frame_mask_checks_shape_and_dtype():
    with pytest.raises(ZooInputError, match="mask"):
        frame_mask(torch.ones(4), (4,))
    with pytest.raises(ZooInputError, match="mask"):
        frame_mask(torch.ones(3, dtype=torch.bool), (4,))


def test_check_features_names_the_input_and_the_expected_shape():
    with pytest.raises(ZooInputError, match=r"x \(power\).*\(\.\.\., 8\)"):
        check_features(torch.rand(3, 7), 8, "x (power)")
    with pytest.raises(ZooInputError, match="complex"):
        check_features(torch.rand(3, 8, dtype=torch.complex64), 8, "x")
    with pytest.raises(ZooInputError, match="floating"):
        check_features(torch.ones(3, 8, dtype=torch.long), 8, "x")

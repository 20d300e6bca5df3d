"""Every extractor: shapes, range, finiteness, targets, hook and mode hygiene."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from explain.errors import ExplainError
from explain.methods import METHODS, Explainer, select
from explain.methods.native import NativeMap

OPTIONS = {"integrated_gradients": {"steps": 4}, "occlusion": {"window": 7, "stride": 7},
           "smoothgrad": {"nt_samples": 4}}
# every method an ABN can give: the CAM family, captum's, and its own native map (the other
# architectures' native maps are tested with their models in test_native_maps.py, the
# attention methods with attention models in test_attention.py)
ALL = sorted(m for m, cls in METHODS.items()
             if not issubclass(cls, NativeMap) and cls.family != "attention") + ["abn"]


def n_hooks(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in net.modules())


@pytest.mark.parametrize("method", ALL)
def test_shapes_range_and_targets(tiny_abn, method):
    x = torch.randn(3, 1, 28, 28)
    with Explainer(tiny_abn, method, **OPTIONS.get(method, {})) as ex:
        e = ex(x)
    assert e.maps.shape == (3, 1, 28, 28)
    assert e.maps.min() >= 0 and e.maps.max() <= 1 and torch.isfinite(e.maps).all()
    assert e.logits.shape == (3, 10)
    assert torch.equal(e.targets, e.logits.argmax(1))
    assert e.method == method
    e2 = Explainer(tiny_abn, method, **OPTIONS.get(method, {}))(x, targets=[1, 2, 3])
    assert e2.targets.tolist() == [1, 2, 3]


@pytest.mark.parametrize("method", ALL)
def test_no_warning_reaches_the_terminal(tiny_abn, method):
    """captum's UserWarnings (hooks set on ReLUs, inputs made to require gradients) are its
    internals, not the user's business."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Explainer(tiny_abn, method, **OPTIONS.get(method, {}))(torch.randn(2, 1, 28, 28))
    assert [f"{w.filename}:{w.lineno}: {w.message}" for w in caught] == []


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_input_that_is_not_finite_is_refused(tiny_abn, method, bad):
    x = torch.randn(2, 1, 28, 28)
    x[1, 0, 5, 5] = bad
    with pytest.raises(ExplainError, match="input holds NaN or infinite values"):
        Explainer(tiny_abn, method, **OPTIONS.get(method, {}))(x)
    assert n_hooks(tiny_abn.net) == 0


@pytest.mark.parametrize("method", ALL)
def test_constant_image_gives_finite_maps(tiny_abn, method):
    e = Explainer(tiny_abn, method, **OPTIONS.get(method, {}))(torch.zeros(2, 1, 28, 28))
    assert torch.isfinite(e.maps).all() and torch.isfinite(e.raw).all()
    assert e.maps.min() >= 0 and e.maps.max() <= 1


def test_abn_map_is_native_m_of_x(tiny_abn):
    x = torch.randn(2, 1, 28, 28)
    e = Explainer(tiny_abn, "abn")(x)
    with torch.no_grad():
        out = tiny_abn.net.forward_all(x)
    assert e.raw.shape == (2, 1, 14, 14)
    assert torch.allclose(e.raw, out.att_map)
    assert torch.allclose(e.logits, out.logits)


def test_gradcam_matches_definition_and_touches_no_parameter_grads(tiny_abn):
    x = torch.randn(2, 1, 28, 28)
    e = Explainer(tiny_abn, "gradcam")(x, targets=3)
    net = tiny_abn.net
    acts = {}
    h = net.layer3.register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    try:
        logits = net(x)
    finally:
        h.remove()
    g = torch.autograd.grad(logits[:, 3].sum(), acts["a"])[0]
    expected = torch.relu((g.mean((2, 3), keepdim=True) * acts["a"]).sum(1, keepdim=True))
    assert torch.allclose(e.raw, expected.detach(), atol=1e-5)
    net.zero_grad(set_to_none=True)
    Explainer(tiny_abn, "gradcam")(x)
    assert all(p.grad is None for p in net.parameters())


def test_no_hooks_left_after_many_calls_and_after_an_exception(tiny_abn):
    net = tiny_abn.net
    before = n_hooks(net)
    ex = Explainer(tiny_abn, "gradcam")
    x = torch.randn(1, 1, 28, 28)
    for _ in range(1000):
        ex(x)
    assert n_hooks(net) == before

    def explode(m, i, o):
        raise RuntimeError("boom in forward")
    h = net.layer3.register_forward_hook(explode)
    net.train()
    try:
        for method in ("gradcam", "abn", "cam"):
            with pytest.raises(RuntimeError, match="boom"):
                Explainer(tiny_abn, method)(x)
    finally:
        h.remove()
    assert n_hooks(net) == before
    assert net.training  # mode restored
    assert torch.is_grad_enabled()


def test_a_with_block_holds_eval_mode_and_one_hook_until_it_ends(tiny_abn):
    net = tiny_abn.net.train()
    before = n_hooks(net)
    x = torch.randn(2, 1, 28, 28)
    with Explainer(tiny_abn, "gradcam") as ex:
        assert not net.training  # eval for the whole block, not per call
        first = ex(x)
        assert n_hooks(net) == before + 1  # the layer's hook stays, and only one
        second = ex(x)
        assert n_hooks(net) == before + 1 and not net.training
    assert n_hooks(net) == before and net.training  # removed, mode restored
    assert torch.equal(first.maps, second.maps) and ex.layer == tiny_abn.cam_layer
    with pytest.raises(RuntimeError, match="inside"):
        with Explainer(tiny_abn, "abn") as ex:
            ex(x)
            raise RuntimeError("inside the block")
    assert n_hooks(net) == before and net.training


def test_library_errors_name_the_parameter_not_a_flag(tiny_abn):
    with pytest.raises(ExplainError) as err:
        Explainer(tiny_abn, "gradcam", layer="nope")(torch.randn(1, 1, 28, 28))
    assert err.value.param == "layer" and "--" not in str(err.value)
    assert str(err.value).startswith("layer: ")


def test_unknown_layer_and_method_are_clear(tiny_abn):
    with pytest.raises(ExplainError, match="no layer 'nope'.*candidates"):
        Explainer(tiny_abn, "gradcam", layer="nope")(torch.randn(1, 1, 28, 28))
    with pytest.raises(ExplainError, match="unknown method 'gradkam'"):
        Explainer(tiny_abn, "gradkam")


def test_abn_on_a_model_without_attention_branch(tiny_resnet_dir):
    from explain.registry import create_model
    with pytest.raises(ExplainError, match="no native 'abn' map"):
        Explainer(create_model(str(tiny_resnet_dir)), "abn")(torch.randn(1, 1, 28, 28))


def test_plain_module_and_automatic_layer():
    import torchvision
    net = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    e = Explainer(net, "gradcam")(torch.randn(2, 3, 64, 64))
    assert e.layer == "layer4" and e.maps.shape == (2, 1, 64, 64)


def test_real_model_gradcam_on_photos(imagenet_model):
    """EfficientNet-Lite0 with ImageNet weights: top-1 classes and the Grad-CAM peak."""
    import numpy as np
    from explain.images import load_image
    from conftest import SAMPLES
    xs = [imagenet_model.input(load_image(SAMPLES / f))[0] for f in ("chelsea.jpg", "coffee.jpg")]
    e = Explainer(imagenet_model, "gradcam")(torch.stack(xs))
    assert 281 <= e.targets[0] <= 285 and e.targets[1] == 967
    # the espresso cup fills the centre of the crop; its peak must not be at the border
    x, y = e.peaks()[1].tolist()
    assert 30 < x < 194 and 0 <= y < 170
    assert np.isfinite(e.maps.numpy()).all()


@pytest.mark.parametrize("arch", ["ran", "cbam_resnet", "se_resnet", "attend_rectify",
                                  "bayes_abn_resnet"])
def test_every_method_eval_offers_runs_on_every_architecture(tmp_path, arch):
    """`explain eval --methods all` (and RESULTS.md) asks each model for every method it
    supports; CAM once took Attend-and-Rectify's gate (a Linear on the same pooled features)
    for its classifier."""
    from conftest import tiny_checkpoint
    from explain.registry import create_model
    model = create_model(str(tiny_checkpoint(tmp_path / arch, arch=arch)))
    x = torch.randn(2, 1, 28, 28)
    for method in select(model, "all"):
        e = Explainer(model, method, **OPTIONS.get(method, {}))(x, targets=[9, 3])
        assert e.maps.shape[0] == 2 and torch.isfinite(e.maps).all(), method


@pytest.mark.filterwarnings("ignore:Setting backward hooks:UserWarning")  # captum's, called here
def test_guided_gradcam_equals_captums_on_a_cnn(tiny_abn):
    from captum.attr import GuidedGradCam
    x = torch.randn(2, 1, 28, 28)
    e = Explainer(tiny_abn, "guided_gradcam")(x, targets=[2, 5])
    net = tiny_abn.net
    expected = GuidedGradCam(net, net.layer3).attribute(x.requires_grad_(True), target=[2, 5])
    assert torch.allclose(e.raw, expected.detach().abs().sum(1, keepdim=True), atol=1e-5)

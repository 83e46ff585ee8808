"""The UNet builder (sizes, layers, skips), its in-graph pixel-weighted loss and one training step."""

import itertools

import numpy as np
import pytest

from workshop.models.unet import (
    build_unet,
    build_weighted_unet,
    center_crop,
    nearest_valid_sizes,
    pixel_weighted_cross_entropy,
    unet_output_size,
)


def _layer(model, name):
    return model.get_layer(name)


def test_paper_sizes_and_skip_crops():
    """Depth 4, valid padding: 572 -> 388, skips cropped 64->56, 136->104, 280->200, 568->392."""
    import keras

    model = build_unet((572, 572, 1), 2, depth=4, base_filters=2, padding="valid")
    assert model.output_shape == (None, 388, 388, 2)
    for i, (before, after) in zip((4, 3, 2, 1), ((64, 56), (136, 104), (280, 200), (568, 392))):
        assert _layer(model, f"enc{i}_conv2").output.shape[1] == before
        crop = _layer(model, f"skip{i}_crop")
        assert isinstance(crop, keras.layers.Cropping2D)
        assert crop.output.shape[1:3] == (after, after)
        up = _layer(model, f"up{i}")
        assert isinstance(up, keras.layers.Conv2DTranspose) and tuple(up.strides) == (2, 2)
        concat = _layer(model, f"concat{i}")
        assert isinstance(concat, keras.layers.Concatenate)
        assert concat.output.shape[1:3] == (after, after)
        assert concat.output.shape[-1] == 2 * up.output.shape[-1]       # skip and upsampled halves
    assert unet_output_size(572, 4, "valid") == 388


def test_same_padding_keeps_the_size_and_is_symmetric():
    import keras

    model = build_unet((32, 48, 3), 5, depth=3, base_filters=4)
    assert model.output_shape == (None, 32, 48, 5)
    names = {layer.name for layer in model.layers}
    assert {"enc1_conv1", "enc3_conv2", "pool3", "bottleneck_conv2", "up3", "up1", "concat2",
            "dec1_conv2", "logits"} <= names
    assert not any("crop" in n for n in names)
    for i in (1, 2, 3):  # the expanding path mirrors the contracting one
        assert _layer(model, f"enc{i}_conv2").filters == _layer(model, f"dec{i}_conv2").filters == 4 * 2 ** (i - 1)
    logits = _layer(model, "logits")
    assert logits.activation is keras.activations.linear and logits.filters == 5
    out = model(np.zeros((1, 32, 48, 3), np.float32))
    assert tuple(out.shape) == (1, 32, 48, 5)


def test_unknown_sizes_with_same_padding():
    model = build_unet((None, None, 1), 2, depth=2, base_filters=2)
    assert tuple(model(np.zeros((2, 8, 12, 1), np.float32)).shape) == (2, 8, 12, 2)


@pytest.mark.parametrize("depth", [1, 2])
def test_valid_sizes_agree_with_the_built_model(depth):
    """unet_output_size says which sizes build and what comes out; the model computes it."""
    sizes = [n for n in range(1, 70) if unet_output_size(n, depth, "valid")]
    assert sizes and all(b - a == 2 ** depth for a, b in itertools.pairwise(sizes))
    h, w = sizes[0], sizes[2]
    model = build_unet((h, w, 1), 3, depth=depth, base_filters=2, padding="valid")
    out = model(np.zeros((1, h, w, 1), np.float32))
    assert tuple(out.shape) == (1, unet_output_size(h, depth, "valid"), unet_output_size(w, depth, "valid"), 3)
    assert unet_output_size(h + 1, depth, "valid") is None


@pytest.mark.parametrize("kwargs, match", [
    ({"input_shape": (570, 572, 1), "padding": "valid"}, "height 570 .* nearest valid: 556 or 572"),
    ({"input_shape": (572, 100, 1), "padding": "valid"}, "width 100 .* nearest valid: 188"),
    ({"input_shape": (30, 32, 1), "depth": 2}, "height 30 .* multiple of 2\\*\\*depth = 4.* 28 or 32"),
    ({"input_shape": (None, 572, 1), "padding": "valid"}, "known height"),
    ({"input_shape": (32, 32), "depth": 2}, "expected \\(H, W, C\\)"),
    ({"input_shape": (32, 32, 1), "padding": "full"}, "'same' or 'valid'"),
    ({"input_shape": (32, 32, 1), "depth": 0}, "depth"),
])
def test_invalid_configurations_raise(kwargs, match):
    args = {"num_classes": 2, "depth": 4, "base_filters": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_unet(**args)


def test_nearest_valid_sizes():
    assert nearest_valid_sizes(572, 4, "valid") == (572, 572)
    assert nearest_valid_sizes(100, 4, "valid") == (None, 188)
    assert nearest_valid_sizes(33, 3, "same") == (32, 40)


def _batch(rng, shape=(2, 16, 16), classes=3):
    image = rng.random(shape + (1,)).astype(np.float32)
    labels = rng.integers(0, classes, shape).astype(np.int32)
    weights = rng.uniform(0.5, 5.0, shape).astype(np.float32)
    return {"image": image, "labels": labels, "weights": weights}


def test_in_graph_loss_is_the_pixel_weighted_cross_entropy():
    from workshop.reference.segmentation import pixel_weighted_cross_entropy_numpy

    rng = np.random.default_rng(0)
    train, unet = build_weighted_unet((16, 16, 1), 3, depth=2, base_filters=4)
    assert {t.name for t in train.inputs} >= {"image", "labels", "weights"}
    data = _batch(rng)
    logits = np.asarray(train(data))
    np.testing.assert_allclose(logits, np.asarray(unet(data["image"])), atol=1e-6)   # shared layers
    (loss,) = train.losses
    want = pixel_weighted_cross_entropy_numpy(logits, data["labels"], data["weights"])
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    # the weights are used: a weight map concentrated on one pixel gives that pixel's loss / N
    one = np.zeros_like(data["weights"])
    one[1, 3, 5] = 7.0
    train({**data, "weights": one})
    want_one = pixel_weighted_cross_entropy_numpy(logits, data["labels"], one)
    np.testing.assert_allclose(float(train.losses[0]), want_one, rtol=1e-5)
    assert want_one > 0
    np.testing.assert_allclose(float(pixel_weighted_cross_entropy(data["labels"], logits, data["weights"])),
                               want, rtol=1e-5)


def test_one_training_step_reduces_the_weighted_loss():
    import keras

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    train, _ = build_weighted_unet((16, 16, 1), 2, depth=2, base_filters=4)
    data = _batch(rng, classes=2)
    data["labels"] = (data["image"][..., 0] > 0.5).astype(np.int32)
    train.compile(optimizer=keras.optimizers.SGD(0.05))
    before = train.evaluate(data, verbose=0)
    train.train_on_batch(data)
    after = train.evaluate(data, verbose=0)
    assert np.isfinite(before) and after < before


def test_valid_padding_training_model_takes_cropped_targets():
    rng = np.random.default_rng(2)
    train, unet = build_weighted_unet((44, 48, 1), 2, depth=2, base_filters=2, padding="valid")
    out_hw = unet.output_shape[1:3]
    assert out_hw == (unet_output_size(44, 2, "valid"), unet_output_size(48, 2, "valid"))
    full = _batch(rng, shape=(1, 44, 48), classes=2)
    data = {"image": full["image"], "labels": center_crop(full["labels"], out_hw),
            "weights": center_crop(full["weights"], out_hw)}
    assert data["labels"].shape == (1,) + out_hw
    assert tuple(train(data).shape) == (1,) + out_hw + (2,)
    assert np.isfinite(float(train.losses[0]))


def test_center_crop():
    a = np.arange(2 * 5 * 6).reshape(2, 5, 6)
    np.testing.assert_array_equal(center_crop(a, (2, 3)), a[:, 1:3, 1:4])
    with pytest.raises(ValueError, match="within"):
        center_crop(a, (6, 2))


def test_in_graph_loss_is_chapter_8s_weighted_cross_entropy_on_every_registry_case():
    """The model's loss and the exercise's reference tiers agree (the notebook trains with the
    learner's TF tier through ``loss_fn``)."""
    from workshop.exercises import get

    ex = get("weighted_cross_entropy")
    for case in ex.cases(public_only=False, seed=0, n_random=20):
        logits, labels, weights = case.fresh_args()[0]
        if logits.ndim == 3:
            logits, labels, weights = logits[None], labels[None], weights[None]
        got = float(pixel_weighted_cross_entropy(labels, logits, weights))
        np.testing.assert_allclose(got, ex.expected(case), rtol=1e-6, atol=1e-9, err_msg=case.name)


def test_weighted_unet_trains_with_a_given_loss_fn():
    from workshop.reference.segmentation import (
        weighted_cross_entropy_numpy,
        weighted_cross_entropy_tf,
    )

    rng = np.random.default_rng(2)
    calls = []

    def loss_fn(logits, labels, weights):
        calls.append(1)
        return weighted_cross_entropy_tf(logits, labels, weights)

    train, _ = build_weighted_unet((16, 16, 1), 3, depth=2, base_filters=4, loss_fn=loss_fn)
    data = _batch(rng)
    logits = np.asarray(train(data))
    assert calls
    np.testing.assert_allclose(float(train.losses[0]),
                               weighted_cross_entropy_numpy(logits, data["labels"], data["weights"]), rtol=1e-5)

"""The notebook helpers: the training loop, the device choice and textbook numbers."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from companion.device import default_device
from companion.formatting import textbook_number
from companion.optim import SGD
from companion.problems import digits, mlp
from companion.training import train


@pytest.fixture(scope="module")
def data():
    return digits(seed=0)


def _run(data, **options):
    model = mlp(64, 16, 10, seed=0)
    optimizer = SGD(model.parameters(), lr=0.1)
    return train(model, optimizer, data, epochs=1, batch_size=256, seed=0, **options)


def test_callback_sees_every_step_and_its_per_example_losses(data):
    seen = []
    history = _run(data, progress=False, callback=lambda step, losses: seen.append((step, losses)))
    n_steps = -(-data.x_train.shape[0] // 256)
    assert [s for s, _ in seen] == list(range(n_steps))
    assert all(not losses.requires_grad for _, losses in seen)
    assert seen[0][1].shape == (256,) and seen[-1][1].numel() == data.x_train.shape[0] % 256
    means = np.array([float(losses.mean()) for _, losses in seen])
    variances = np.array([float(((losses - losses.mean()) ** 2).mean()) for _, losses in seen])
    np.testing.assert_allclose(history.step_loss, means, rtol=1e-6)
    np.testing.assert_allclose(history.step_loss_variance, variances, rtol=1e-5)


def test_a_base_install_without_tqdm_trains_with_or_without_a_bar(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    reference = _run(data, progress=False)
    with_bar = _run(data, progress=True)
    np.testing.assert_array_equal(reference.step_loss, with_bar.step_loss)


def test_the_progress_bar_goes_to_stderr_never_stdout(data, capsys):
    pytest.importorskip("tqdm")
    _run(data, progress=True, description="digits")
    out, err = capsys.readouterr()
    assert out == "" and "digits" in err


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"epochs": 0}, ValueError, r"epochs must be an integer >= 1, got 0"),
        ({"epochs": True}, TypeError, r"epochs must be an integer >= 1, got True"),
        ({"epochs": 1, "batch_size": 2.0}, TypeError, r"batch_size must be an integer >= 1"),
        ({"epochs": 1, "progress": "yes"}, TypeError, r"progress must be True or False"),
        ({"epochs": 1, "callback": 3}, TypeError, r"callback must be callable"),
    ],
)
def test_bad_arguments_are_named(data, options, error, match):
    model = mlp(64, 16, 10, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    options.setdefault("batch_size", 64)
    with pytest.raises(error, match=match):
        train(model, SGD(model.parameters(), lr=0.1), data, **options)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_device_this_machine_lacks_is_refused_at_once(monkeypatch):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    monkeypatch.setenv("COMPANION_DEVICE", f"cuda:{count}")
    with pytest.raises(ValueError, match=rf"COMPANION_DEVICE='cuda:{count}' names a CUDA device"):
        default_device()
    monkeypatch.setenv("COMPANION_DEVICE", "banana")
    with pytest.raises(ValueError, match="COMPANION_DEVICE must be a device string"):
        default_device()
    monkeypatch.setenv("COMPANION_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    with pytest.raises(TypeError, match="prefer must be a device string"):
        default_device(3)


@pytest.mark.parametrize(
    ("value", "spec", "options", "text"),
    [
        (1.9e-4, None, {}, "1.9 × 10⁻⁴"),
        (0.0, None, {}, "0"),
        (0.0, ".1e", {}, "0"),
        (3.0e-7, None, {"digits": 3}, "3.00 × 10⁻⁷"),
        (1.1e-16, ".1e", {}, "1.1 × 10⁻¹⁶"),
        (250000.0, None, {}, "2.5 × 10⁵"),
        (-0.5, ".2f", {}, "−0.50"),
        (0.9510, ".4f", {}, "0.9510"),
        (np.float32(0.25), None, {}, "0.25"),
        (42.0, None, {"digits": 3}, "42.0"),
    ],
)
def test_textbook_numbers(value, spec, options, text):
    shown = textbook_number(value, spec, **options)
    assert "\N{NO-BREAK SPACE}×" in shown if "×" in text else True  # never broken apart
    assert shown.replace("\N{NO-BREAK SPACE}", " ") == text


def test_textbook_number_refuses_what_is_not_a_number():
    with pytest.raises(TypeError, match="value must be a real number"):
        textbook_number("0.1")
    with pytest.raises(TypeError, match="value must be a real number"):
        textbook_number(True)


def test_quadratic_gd_steps_matches_the_closed_form_and_names_bad_arguments():
    from companion.problems import quadratic_gd_steps

    h, w0 = np.array([1.0, 10.0]), np.array([1.0, 1.0])
    # one shared rate 0.1: coordinate 2 is solved at once, coordinate 1 contracts by 0.9
    steps = quadratic_gd_steps(h, 0.1, w0, tol=1e-6, max_steps=1000)
    expected = next(t for t in range(1000) if 0.5 * 0.9 ** (2 * t) <= 1e-6)
    assert steps == expected
    assert quadratic_gd_steps(h, 0.1, w0, tol=1e-6, max_steps=3) is None
    with pytest.raises(TypeError, match=r"lrs\[0\] is True"):
        quadratic_gd_steps(h, [True], w0, tol=1e-6, max_steps=3)
    with pytest.raises(ValueError, match="tol must be a finite real number > 0"):
        quadratic_gd_steps(h, 0.1, w0, tol=0.0, max_steps=3)
    with pytest.raises(TypeError, match="max_steps must be an integer >= 0"):
        quadratic_gd_steps(h, 0.1, w0, tol=1e-6, max_steps=3.0)

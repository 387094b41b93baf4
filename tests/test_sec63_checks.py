"""Checks that section 6.3 used to run on the page, now in the suite.

* ``companion.optim.Adam`` against ``torch.optim.Adam`` on random gradients (the page
  states that they agree to rounding);
* Adam *without* bias correction, which the page measures through
  ``AMSGrad(variant="paper", lr_decay="none")`` on a constant gradient, against its
  closed form and against the closed form ``rho_t`` of the bias-correction ratio.
"""

from __future__ import annotations

import numpy as np
import torch

import companion.optim as co
from companion.problems import run_on_gradients

f64 = torch.float64


def test_companion_adam_matches_torch_adam_on_random_gradients():
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(4, 3, dtype=f64, generator=generator)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt_ours = co.Adam([ours], lr=1e-2)
    opt_theirs = torch.optim.Adam([theirs], lr=1e-2)
    for _ in range(200):
        g = torch.randn(4, 3, dtype=f64, generator=generator)
        ours.grad, theirs.grad = g.clone(), g.clone()
        opt_ours.step()
        opt_theirs.step()
    assert (ours - theirs).abs().max().item() <= 1e-15
    assert (ours - start).abs().max().item() > 0.1  # the runs moved


def uncorrected_adam_steps(steps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """|w_{t+1} - w_t| of Adam without bias correction on g = 1, in closed form.

    With g_t = 1, m_t = 1 - beta1^t and v_t = 1 - beta2^t, so the step is
    lr (1 - beta1^t) / (sqrt(1 - beta2^t) + eps).
    """
    t = np.arange(1, steps + 1)
    return lr * (1 - betas[0] ** t) / (np.sqrt(1 - betas[1] ** t) + eps)


def test_uncorrected_adam_is_amsgrad_paper_on_a_constant_gradient():
    """v_t only grows on a constant gradient, so AMSGrad's maximum is v_t itself."""
    steps = 400
    grads = np.ones(steps)
    path = run_on_gradients(
        lambda p: co.AMSGrad(p, lr=1e-3, variant="paper", lr_decay="none"), grads, 0.0
    )
    np.testing.assert_allclose(
        np.abs(np.diff(path)), uncorrected_adam_steps(steps), rtol=1e-12, atol=0
    )


def test_bias_correction_ratio_matches_rho_t():
    steps = 3000
    grads = np.ones(steps)
    corrected = np.abs(np.diff(run_on_gradients(lambda p: co.Adam(p, lr=1e-3), grads, 0.0)))
    uncorrected = np.abs(
        np.diff(run_on_gradients(lambda p: co.AMSGrad(p, lr=1e-3, lr_decay="none"), grads, 0.0))
    )
    t = np.arange(1, steps + 1)
    rho = (1 - 0.9**t) / np.sqrt(1 - 0.999**t)
    assert np.abs(uncorrected / corrected / rho - 1).max() < 1e-6

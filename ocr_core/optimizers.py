"""Adam, AdamW and Nesterov SGD with the one-cycle and constant schedules, as `torch.optim` computes them.

Why not `torch.optim`: building its first optimizer imports `torch._dynamo` (its `add_param_group` and `step`
are wrapped to keep `torch.compile` out), which costs about a second of CPU on this project's 2-core machine:
a quarter of the default `train`, which needs none of it. These are the same update rules (PyTorch's
single-tensor paths, CPU or CUDA alike; tests compare them step for step with `torch.optim.Adam`, `AdamW`,
`SGD` and `OneCycleLR`), applied with `torch._foreach_*` ops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
ONECYCLE_WARMUP = 0.25  # share of the steps spent rising to the peak rate
ONECYCLE_START_DIVISOR = 25.0  # OneCycleLR's defaults: start at peak / 25, end at start / 10,000
ONECYCLE_END_DIVISOR = 1e4
ONECYCLE_MOMENTUM = (0.85, 0.95)  # momentum (Adam's beta1) falls while the rate rises, and back
ONECYCLE_MIN_STEPS = 8  # OneCycleLR divides by zero when its warm-up is under two steps


class Optimizer:
    """Adam (`adam`), Adam with decoupled weight decay (`adamw`) or SGD with Nesterov momentum 0.9 (`sgd`).
    `rate` and `momentum` (Adam's beta1) are set by the schedule before each step."""

    def __init__(self, kind: str, parameters: Iterable[torch.nn.Parameter], rate: float, weight_decay: float = 0.0):
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}")
        self.kind, self.rate, self.weight_decay = kind, rate, weight_decay
        self.momentum = 0.9
        self.beta2, self.eps = 0.999, 1e-8
        self.parameters = [parameter for parameter in parameters if parameter.requires_grad]
        self.steps = 0
        self.first: list[torch.Tensor] = []  # Adam's exp_avg; SGD's momentum buffer
        self.second: list[torch.Tensor] = []  # Adam's exp_avg_sq

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        pairs = [(p, p.grad) for p in self.parameters if p.grad is not None]
        if not pairs:
            return
        parameters, grads = (list(items) for items in zip(*pairs, strict=True))
        self.steps += 1
        if self.kind == "sgd":
            self.sgd_step(parameters, grads)
        else:
            self.adam_step(parameters, grads)

    def sgd_step(self, parameters: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        if self.weight_decay:
            grads = torch._foreach_add(grads, parameters, alpha=self.weight_decay)
        if not self.first:
            self.first = [grad.clone() for grad in grads]
        else:
            torch._foreach_mul_(self.first, self.momentum)
            torch._foreach_add_(self.first, grads)
        grads = torch._foreach_add(grads, self.first, alpha=self.momentum)  # Nesterov
        torch._foreach_add_(parameters, grads, alpha=-self.rate)

    def adam_step(self, parameters: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        if not self.first:
            self.first = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in parameters]
            self.second = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in parameters]
        if self.weight_decay and self.kind == "adamw":
            torch._foreach_mul_(parameters, 1 - self.rate * self.weight_decay)
        elif self.weight_decay:
            grads = torch._foreach_add(grads, parameters, alpha=self.weight_decay)
        torch._foreach_lerp_(self.first, grads, 1 - self.momentum)
        torch._foreach_mul_(self.second, self.beta2)
        torch._foreach_addcmul_(self.second, grads, grads, 1 - self.beta2)
        step_size = self.rate / (1 - self.momentum**self.steps)
        correction = (1 - self.beta2**self.steps) ** 0.5
        denominators = torch._foreach_sqrt(self.second)
        torch._foreach_div_(denominators, correction)
        torch._foreach_add_(denominators, self.eps)
        torch._foreach_addcdiv_(parameters, self.first, denominators, -step_size)


def annealed(start: float, end: float, share: float) -> float:
    """Cosine from `start` (share 0) to `end` (share 1)."""
    return end + (start - end) / 2 * (math.cos(math.pi * share) + 1)


class Schedule:
    """Sets the optimizer's rate (and momentum) for each step; `advance()` after every step, as
    `torch.optim.lr_scheduler` does. One-cycle is OneCycleLR with its defaults and a 25% warm-up; fewer than
    `ONECYCLE_MIN_STEPS` steps, or `onecycle=False`, keep the rate constant."""

    def __init__(self, optimizer: Optimizer, total_steps: int, onecycle: bool):
        self.optimizer, self.total_steps, self.step = optimizer, total_steps, 0
        self.peak = optimizer.rate
        self.onecycle = onecycle and total_steps >= ONECYCLE_MIN_STEPS
        self.apply()

    def apply(self) -> None:
        if not self.onecycle:
            return
        start = self.peak / ONECYCLE_START_DIVISOR
        low, high = ONECYCLE_MOMENTUM
        rise_end, last = float(ONECYCLE_WARMUP * self.total_steps) - 1, self.total_steps - 1
        if self.step <= rise_end:
            share = self.step / rise_end
            rate, momentum = annealed(start, self.peak, share), annealed(high, low, share)
        else:
            share = (self.step - rise_end) / (last - rise_end)
            rate, momentum = annealed(self.peak, start / ONECYCLE_END_DIVISOR, share), annealed(low, high, share)
        self.optimizer.rate, self.optimizer.momentum = rate, momentum  # SGD's momentum cycles too

    def advance(self) -> None:
        self.step += 1
        self.apply()

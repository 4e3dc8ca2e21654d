"""Network pieces shared by the suite's PyTorch agents (SAC, SRL, Symphony).

On a CPU, networks of SAC's size (256x256) are bound by per-op dispatch as much as by arithmetic, so
the pieces here cut the number of ops an update runs:
  * `BatchedMLP`: K independent MLPs with stacked weights, one (batched) matmul per layer for all K
    (SAC's twin critics are one module, not two);
  * `FlatParameters`: a module's parameters as views of one contiguous buffer (and their gradients
    of another), so an optimiser step or a Polyak update is one op over the whole buffer.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _uniform(*shape: int, fan_in: int) -> nn.Parameter:
    """torch.nn.Linear's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases."""
    bound = 1 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class BatchedMLP(nn.Module):
    """`heads` MLPs inputs -> hidden -> ... -> outputs with ReLU between layers, sharing one input.

    Layer 1 is one matmul for all heads (inputs x heads*hidden); later layers are batched matmuls over
    the head dimension. Initialised as torch.nn.Linear, head by head, so a BatchedMLP equals `heads`
    separate nn.Sequential MLPs with the same weights (tested).
    """

    def __init__(self, heads: int, inputs: int, hidden: tuple[int, ...] | list[int], outputs: int,
                 layer_norm: bool = False) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("BatchedMLP needs at least one hidden layer")
        self.heads, self.inputs, self.outputs = int(heads), int(inputs), int(outputs)
        sizes = [self.inputs, *(int(h) for h in hidden), self.outputs]
        self.weights = nn.ParameterList(_uniform(heads, a, b, fan_in=a) for a, b in zip(sizes[:-1], sizes[1:]))
        self.biases = nn.ParameterList(_uniform(heads, 1, b, fan_in=a) for a, b in zip(sizes[:-1], sizes[1:]))
        # LayerNorm after every hidden matmul, before the ReLU (RLPD's critic, Ball et al. 2023), with a
        # gain and shift per head, as torch.nn.LayerNorm's defaults (1 and 0).
        self.layer_norm = bool(layer_norm)
        if self.layer_norm:
            self.norm_gains = nn.ParameterList(nn.Parameter(torch.ones(heads, 1, int(h))) for h in hidden)
            self.norm_shifts = nn.ParameterList(nn.Parameter(torch.zeros(heads, 1, int(h))) for h in hidden)

    def forward(self, x: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        """x: (B, inputs) -> (heads, B, outputs). `detach_weights`: gradients reach x only (an actor's
        loss through a critic it must not train), which also skips the weight-gradient matmuls.

        Every layer is one baddbmm over (heads, B, features) tensors that stay contiguous (the input is
        broadcast over heads, not copied), with ReLU in place: measured faster than a shared first matmul
        followed by a transpose, and than separate per-head matmuls."""
        weights, biases = list(self.weights), list(self.biases)
        gains, shifts = (list(self.norm_gains), list(self.norm_shifts)) if self.layer_norm else ([], [])
        if detach_weights:
            weights, biases = [w.detach() for w in weights], [b.detach() for b in biases]
            gains, shifts = [g.detach() for g in gains], [s.detach() for s in shifts]
        h = x.expand(self.heads, *x.shape)
        last = len(weights) - 1
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                if self.layer_norm:
                    h = torch.addcmul(shifts[i], F.layer_norm(h, h.shape[-1:]), gains[i])
                h = h.relu_()
        return h

    def head(self, k: int) -> nn.Sequential:
        """Head k as a plain nn.Sequential with copies of its weights (for tests and export)."""
        layers: list[nn.Module] = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            linear = nn.Linear(w.shape[1], w.shape[2])
            with torch.no_grad():
                linear.weight.copy_(w[k].T)
                linear.bias.copy_(b[k, 0])
            layers.append(linear)
            if self.layer_norm and i < len(self.weights) - 1:
                norm = nn.LayerNorm(w.shape[2])
                with torch.no_grad():
                    norm.weight.copy_(self.norm_gains[i][k, 0])
                    norm.bias.copy_(self.norm_shifts[i][k, 0])
                layers.append(norm)
            layers.append(nn.ReLU())
        return nn.Sequential(*layers[:-1])


class FlatParameters:
    """Parameters moved into one contiguous buffer `flat` (each parameter a view of it), with
    gradients as views of one buffer `grad`. Backward accumulates in place into those views, so an
    optimiser given `flat` (whose .grad is `grad`) updates every parameter in one fused step."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = list(params)
        self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in self.params:
            n = p.numel()
            p.data = self.flat[offset : offset + n].view_as(p)
            p.grad = self.grad[offset : offset + n].view_as(p)
            offset += n
        self.flat.grad = self.grad

    def zero_grad(self) -> None:
        self.grad.zero_()

    def __len__(self) -> int:
        return self.flat.numel()


def flatten_parameters(params: list[nn.Parameter]) -> tuple[torch.Tensor, torch.Tensor]:
    """`FlatParameters` as (flat, grad) buffers."""
    flat = FlatParameters(params)
    return flat.flat, flat.grad


def resolve_device(name: str) -> torch.device:
    """agent.device: 'cpu', 'cuda', 'cuda:N' or 'auto' (a GPU when there is one)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"agent.device: unknown device '{name}' (cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"agent.device={name}, but torch sees no CUDA device here")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"agent.device: '{name}' is not supported (cpu, cuda, cuda:N or auto)")
    return device

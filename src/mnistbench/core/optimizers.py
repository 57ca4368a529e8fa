"""Optimizers that are more than one torch class: Muon, which orthogonalizes the update of weight matrices and
leaves every other parameter to AdamW (Jordan et al. 2024; the CIFAR-10 and NanoGPT speed records use it).

The orthogonalization is torch.optim.Muon's own; what this module adds is the split, as the airbench Muon record
makes it: every weight of two or more dimensions goes to Muon (a convolution's filters as an (out, in x kh x kw)
matrix), biases and BatchNorm's scale and shift go to AdamW."""

from __future__ import annotations

from typing import Any, Iterable

import torch


def _matrix(t: torch.Tensor, share: bool) -> torch.Tensor:
    """`t` as an (out, rest) matrix. A channels-last filter is laid out (out, kh, kw, in): taken in that order,
    its columns are a permutation of (in, kh, kw)'s, which Muon's orthogonalization commutes with (X -> X P for a
    permutation P), so the update is the same. `share`: a view of the same storage (a parameter), else whatever
    reshape gives (a gradient, only read)."""
    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        t = t.permute(0, 2, 3, 1)
    return t.view(t.shape[0], -1) if share else t.reshape(t.shape[0], -1)


class MuonAdamW(torch.optim.Optimizer):
    """Muon for weight matrices and convolution filters, AdamW for the rest, stepped as one optimizer.

    `lr` is Muon's rate and `adamw_lr` AdamW's; a learning-rate schedule scales both alike (its param_groups are
    this optimizer's two groups, whose rates are handed to the inner optimizers at each step). A convolution's
    4-D filter is given to torch.optim.Muon, which takes 2-D parameters only, as a 2-D view of the same storage:
    Muon's in-place update is the filter's update."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 0.02, momentum: float = 0.95,
                 nesterov: bool = True, weight_decay: float = 0.0, adamw_lr: float = 1e-3,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_weight_decay: float = 0.0) -> None:
        params = list(params)
        matrices = [p for p in params if p.ndim >= 2]
        others = [p for p in params if p.ndim < 2]
        groups = [g for g in ({"params": matrices, "lr": lr, "role": "muon"},
                              {"params": others, "lr": adamw_lr, "role": "adamw"}) if g["params"]]
        super().__init__(groups, {"lr": lr})
        # Matrices as Muon sees them: 2-D views sharing storage with the parameters they stand for.
        self._views = [(p, _matrix(p.detach(), share=True)) for p in matrices]
        self._muon = (torch.optim.Muon([v for _, v in self._views], lr=lr, momentum=momentum, nesterov=nesterov,
                                       weight_decay=weight_decay) if matrices else None)
        self._adamw = (torch.optim.AdamW(others, lr=adamw_lr, betas=tuple(adamw_betas),
                                         weight_decay=adamw_weight_decay, foreach=True) if others else None)

    def _inner(self, role: str) -> torch.optim.Optimizer | None:
        return self._muon if role == "muon" else self._adamw

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:  # a schedule sets these rates: the inner optimizers step with them
            inner = self._inner(group["role"])
            inner.param_groups[0]["lr"] = group["lr"]
        if self._muon is not None:
            for param, view in self._views:
                if param.grad is not None:  # laid out as the parameter is, so its columns match the view's
                    grad = param.grad.contiguous(memory_format=torch.channels_last) if (
                        param.ndim == 4 and not param.is_contiguous()) else param.grad.contiguous()
                    view.grad = _matrix(grad, share=False)
                else:
                    view.grad = None
            self._muon.step()
            for _, view in self._views:
                view.grad = None
        if self._adamw is not None:
            self._adamw.step()

    def roles(self) -> dict[str, int]:
        """How many parameters each part steps: {"muon": n, "adamw": m}."""
        return {g["role"]: len(g["params"]) for g in self.param_groups}

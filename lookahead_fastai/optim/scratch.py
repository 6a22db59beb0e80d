"""The hand-written SGD with momentum of the optimizer tour (seed 003): a plain
``torch.optim.Optimizer`` subclass, kept as a teaching example and checked against torch's SGD."""
import torch

__all__ = ["ScratchSGD"]


class ScratchSGD(torch.optim.Optimizer):
    """v <- momentum * v + (g + weight_decay * p);  p <- p - lr * v   (torch's SGD, dampening 0)."""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                if group["momentum"]:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = grad.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                    grad = state["momentum_buffer"]
                p.add_(grad, alpha=-group["lr"])
        return loss

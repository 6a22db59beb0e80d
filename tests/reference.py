"""Lookahead written straight from the paper's equations (Zhang et al. 2019, Alg. 1), with plain
per-tensor loops, as the yardstick for the optimizers under test. Shares no code with the package.

phi_0 = theta_0; after inner steps k, 2k, ...: phi <- phi + alpha (theta - phi); theta <- phi.
State policy at a sync, for each inner state tensor m shaped like its parameter:
  none: keep; reset: m <- 0 and step <- 0; pullback: m <- alpha m + (1 - alpha) c, c <- m
  (c starts at 0 and is a copy).
Nested (s, h): after every s syncs, psi <- psi + h (phi - psi); phi <- psi; theta <- psi.
"""
import torch


def _buffers(inner_state, p):
    st = inner_state.get(p, {})
    return {n: v for n, v in st.items()
            if n != "step" and torch.is_tensor(v) and v.is_floating_point() and v.shape == p.shape}


class PaperLookahead:
    def __init__(self, params, inner, inner_state, k, alpha, mode, s=0, h=0.5):
        self.params, self.inner, self.inner_state = list(params), inner, inner_state
        self.k, self.alpha, self.mode, self.s, self.h = k, alpha, mode, s, h
        self.phi = [p.detach().clone() for p in self.params]
        self.psi = [p.detach().clone() for p in self.params]
        self.cache = {}
        self.t = 0
        self.syncs = 0

    @torch.no_grad()
    def step(self):
        self.inner.step()
        self.t += 1
        if self.t % self.k:
            return
        self.syncs += 1
        for p, phi in zip(self.params, self.phi):
            phi.add_(self.alpha * (p - phi))
            p.copy_(phi)
        state = self.inner_state() if callable(self.inner_state) else self.inner_state
        for p in self.params:
            if self.mode == "reset":
                for m in _buffers(state, p).values():
                    m.zero_()
                if "step" in state.get(p, {}):
                    st = state[p]["step"]
                    if torch.is_tensor(st):
                        st.zero_()
                    else:
                        state[p]["step"] = 0
            elif self.mode == "pullback":
                for name, m in _buffers(state, p).items():
                    c = self.cache.get((p, name), torch.zeros_like(m))
                    m.copy_(self.alpha * m + (1 - self.alpha) * c)
                    self.cache[(p, name)] = m.clone()
        if self.s and self.syncs % self.s == 0:
            for p, phi, psi in zip(self.params, self.phi, self.psi):
                psi.add_(self.h * (phi - psi))
                phi.copy_(psi)
                p.copy_(psi)

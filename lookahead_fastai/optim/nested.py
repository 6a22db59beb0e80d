"""Nested Lookahead: a Lookahead (k, alpha) inside an outer one (s, h).

After every ``s`` syncs of the inner Lookahead: psi <- psi + h (phi - psi), then phi <- psi and
theta <- psi. psi (the outer slow weights) starts at theta_0. ``s = 0`` is plain Lookahead.
The outer update fires once per s inner syncs (the seed version fired on k-1 consecutive steps).
"""
from ._validate import check_non_negative_int, check_unit_interval
from .lookahead import Lookahead, _copy_into, _lerp_into

__all__ = ["NestedLookahead"]


class NestedLookahead(Lookahead):
    """Per param group: ``la_k``, ``la_alpha`` (inner) and ``nla_s``, ``nla_h`` (outer), checked like
    Lookahead's (when a group is added, at every step, and when a state dict is loaded)."""

    _weight_copies = ("slow", "outer_slow")
    _group_checks = {**Lookahead._group_checks, "nla_s": check_non_negative_int, "nla_h": check_unit_interval}

    def __init__(self, optimizer, k=5, alpha=0.5, s=5, h=0.5, pullback="none", foreach=True):
        check_non_negative_int("s", s)
        h = check_unit_interval("h", h)
        self._outer_defaults = {"nla_s": s, "nla_h": h}
        super().__init__(optimizer, k=k, alpha=alpha, pullback=pullback, foreach=foreach)

    def _extra_group_defaults(self):
        return dict(self._outer_defaults)

    def __repr__(self):
        return super().__repr__()[:-1] + f", s={self.defaults['nla_s']}, h={self.defaults['nla_h']})"

    def _sync_group(self, index, group):
        super()._sync_group(index, group)
        s = group["nla_s"]
        if s and self._group_counters[index]["syncs"] % s == 0:
            params = group["params"]
            slow = self._copies_for("slow", params)
            outer = self._copies_for("outer_slow", params)
            _lerp_into(outer, slow, group["nla_h"], self.foreach)  # psi <- psi + h (phi - psi)
            _copy_into(slow, outer, self.foreach)                  # phi <- psi
            _copy_into(params, outer, self.foreach)                # theta <- psi

    def outer_slow_weights(self, param):
        """The outer slow weight psi of ``param``."""
        self._ensure_copies()
        return self._copies_for("outer_slow", [param])[0]


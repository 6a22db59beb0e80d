"""A run's identity and the JSON the store writes (stdlib only)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "run_identity"]


def canonical_json(spec: dict) -> str:
    """The canonical JSON of a spec: sorted keys, no whitespace, non-JSON values via ``str``."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


def run_identity(spec: dict, seed: int) -> str:
    """Stable 16-hex-digit id of (spec, seed): independent of dict key order."""
    payload = f"{canonical_json(spec)}|seed={int(seed)}"
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _json_default(obj: Any) -> Any:
    # numpy scalars / 0-d tensors -> Python numbers; arrays / tensors -> lists; anything else -> str
    for name in ("item", "tolist"):  # a number first, then a list, as far as the object allows
        convert = getattr(obj, name, None)
        if callable(convert):
            try:
                return convert()
            except (TypeError, ValueError, RuntimeError):
                pass
    return str(obj)


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def flatten(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out

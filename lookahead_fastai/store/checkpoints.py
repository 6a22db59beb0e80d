"""A store's checkpoints: where they live (``<store>.files/checkpoints/<run_id>/``), what binds
them to their store and run, and the digests of the last two the store wrote."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from .paths import checkpoint_path

__all__ = ["Checkpoints"]


class Checkpoints:
    """Checkpoint bookkeeping of a :class:`~lookahead_fastai.store.ResultsStore`."""

    @property
    def store_id(self) -> str | None:
        """This store's identity: a random id written when it was created (or upgraded to schema 3);
        None for an older store opened read-only. Checkpoints carry it (:meth:`checkpoint_binding`)."""
        if self.schema_version < 3:  # no store_meta table (an older store, opened read-only)
            return None
        rows = self._read("SELECT value FROM store_meta WHERE key = 'store_id'")
        return rows[0][0] if rows else None

    def checkpoint_binding(self, run_id: str) -> dict:
        """What a checkpoint of ``run_id`` written for this store carries, and must carry to be resumed
        from: this store's id, the run id and a digest of the run's spec."""
        rows = self._read("SELECT spec_json FROM runs WHERE run_id = ?", (run_id,))
        spec = hashlib.sha256(rows[0][0].encode("utf-8")).hexdigest()[:16] if rows else None
        return {"store": self.store_id, "run_id": run_id, "spec": spec}

    def checkpoint_digests(self, run_id: str) -> list[str]:
        """The sha256 digests of the run's last two checkpoints this store wrote (newest first): a
        checkpoint file whose digest is not one of them is not resumed from."""
        rows = self._read("SELECT checkpoint_digests FROM runs WHERE run_id = ?", (run_id,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else []

    def record_checkpoint(self, run_id: str, digest: str, token: str | None = None) -> None:
        """Record the digest of the checkpoint about to replace the run's last one. The one before
        stays accepted too: a kill between this and the file's rename leaves that one in place."""
        with self._tx() as c:
            self._require_status(c, run_id, ("running",), "record a checkpoint of")
            self._owned_tx(c, run_id, token, "record a checkpoint of")
            (old,) = c.execute("SELECT checkpoint_digests FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            digests = [digest] + [d for d in (json.loads(old) if old else [])[:1] if d != digest]
            c.execute("UPDATE runs SET checkpoint_digests = ? WHERE run_id = ?", (json.dumps(digests), run_id))

    def checkpoint_dir(self, run_id: str) -> Path:
        """``<db_dir>/<db_stem>.files/checkpoints/<run_id>/``, created if missing."""
        d = self._checkpoint_path(run_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def drop_checkpoint(self, run_id: str) -> bool:
        """Delete the run's checkpoint (e.g. once it finished); True if one existed. Checkpoints
        that were moved aside as unusable (``last.pth.unusable-*``; ``unreadable-`` before) are kept
        for inspection: the warning that moved them names them."""
        d = self._checkpoint_path(run_id)
        if not d.exists():
            return False
        aside = [p for p in d.iterdir() if ".unusable-" in p.name or ".unreadable-" in p.name]
        if not aside:
            shutil.rmtree(d)
            return True
        rest = [p for p in d.iterdir() if p not in aside]
        for p in rest:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        return bool(rest)

    def _checkpoint_path(self, run_id: str) -> Path:
        return checkpoint_path(self.path, run_id)

"""One worker of tests/test_store_concurrency.py: for each round, wait until every worker is ready,
then open that round's NEW store at the same instant as the others and claim its runs.

Imports only the store (stdlib), so a worker starts in a fraction of a second. Prints one line per
run it trained (``round run_id``); any exception goes to stderr and exits 1.
"""
import sys
import time
from pathlib import Path

from lookahead_fastai.store import ResultsStore

RUNS = 4


def barrier(folder: Path, name: str, who: int, workers: int, timeout: float = 120.0) -> None:
    """Wait for every worker, then spin until one common instant: 20 ms after the last arrival."""
    (folder / f"{name}.{who}").touch()
    deadline = time.monotonic() + timeout
    while len(ready := list(folder.glob(f"{name}.*"))) < workers:
        if time.monotonic() > deadline or (folder / "failed").exists():
            raise SystemExit(f"worker {who}: the others never reached {name}")
        time.sleep(0.0005)
    go = max(p.stat().st_mtime for p in ready) + 0.02
    while time.time() < go:
        pass


def main(folder: str, who: str, workers: str, rounds: str) -> None:
    folder, who, workers = Path(folder), int(who), int(workers)
    for r in range(int(rounds)):
        barrier(folder, f"ready-{r}", who, workers)
        with ResultsStore(folder / f"round-{r}.sqlite") as db:
            for i in range(RUNS):
                lease = db.claim(f"run{i}", "stress", f"row{i}", 0, {"row": i}, heartbeat_s=0)
                if lease.state == "claimed":
                    lease.log_epoch(0, {"acc": float(i)})
                    lease.finish({"acc": float(i), "trained_by": who})
                    print(r, lease.run_id, flush=True)


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except BaseException:
        (Path(sys.argv[1]) / "failed").touch()  # the others stop waiting at their next barrier
        raise

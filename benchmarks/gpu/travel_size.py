"""What travels to the GPU machine, and whether it fits: the working tree (tracked files and
untracked ones git does not ignore) plus the carried folders, against the device's 64 MiB limit.

    python benchmarks/gpu/travel_size.py [CARRIED_PATH ...]     (default: .whl .gpu-data)

Exits 1 when the total is over the limit.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 64 * 2**20


def tree_bytes(root=ROOT):
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout
    total = 0
    for name in out.decode().split("\0"):
        path = root / name
        if name and path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def path_bytes(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv=None):
    carried = (argv if argv is not None else sys.argv[1:]) or [".whl", ".gpu-data"]
    parts = [("working tree (tracked + untracked, not ignored)", tree_bytes())]
    parts += [(f"carry {c}", path_bytes(ROOT / c)) for c in carried]
    total = sum(n for _, n in parts)
    for label, n in parts:
        print(f"{n / 2**20:8.2f} MiB  {label}")
    print(f"{total / 2**20:8.2f} MiB  total travelling (limit {LIMIT / 2**20:.0f} MiB)")
    if total > LIMIT:
        print("over the device's limit: carry less", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

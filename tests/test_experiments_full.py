"""No crash at hour three: the ``full`` specs of every experiment build their Learner and train one
batch, through the runner (``runner.train``), on a tiny stand-in dataset of the right layout.

Specs that differ only in their lr, their number of epochs or their labels run the same code (an lr
and an epoch count are numbers the schedule scales), so one spec of each such group is trained: 123
Learners for 188 full specs when this was written. Every spec is still validated as a RunSpec (its
optimizer and schedule functions are built then).

The stand-ins are made from a few real CIFAR-10 subset images: for each registry dataset a folder
laid out as the real one (``cifar100/train/<100 classes>/``, ``imagenette2-320/train/``+``val/``,
MNIST-style IDX files ...), one or two images per class. Only the batch size (2, so
that a handful of images make a batch), the subset sizes (the whole stand-in for training, 10
validation images) and the image size of folder datasets (at most 32 px, so that a ResNet-50 batch
takes a fraction of a second on 2 cores) change, and the batches are loaded in the test process
(``num_workers=0``: forking this process, ResNet-50s and all, for loader workers at every fit cost
more CPU than the batches themselves; the loader workers are tested in tests/test_workers.py and
the GPU script's loader section); the architecture, optimizer, hyper-parameters, schedule, loss,
augmentation, mixup, state reset and sessions are the full spec's.
"""
import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback, CancelFitException

from lookahead_fastai.callbacks.lookahead import lookahead_of
from lookahead_fastai.experiments import EXPERIMENTS
from lookahead_fastai.registry.datasets import DATASETS
from lookahead_fastai.registry.optimizers import parse_optimizer_name
from lookahead_fastai.runner import train

pytestmark = pytest.mark.slow  # one batch of every full-scale model: `make test` runs it, `make check` does not

BS = 2
MAX_SIZE = 32


N_VALID = 10  # validation (slow weights at the end) on 10 images: one per class where there are 10
HOLDOUT = 10  # a spec with three splits holds out 10 of the stand-in's training images (a full spec's count is larger)


def tiny(spec):
    embedded = DATASETS[spec.dataset].url is None  # digits: the real 1,437 / 360, not a stand-in
    return dataclasses.replace(spec, bs=BS, n_train=20 if embedded else None, n_valid=N_VALID,
                               size=min(spec.size, MAX_SIZE) if spec.size else None,
                               holdout=HOLDOUT if spec.holdout else None)  # three splits kept, on the stand-in's images


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Batches of 2 tiny images: one thread is faster, and two spin-waiting OpenMP threads on a busy
    2-core machine made each batch up to 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory, shared_data):
    """A data folder holding every registry dataset in its own layout, built from real images."""
    from PIL import Image
    root = tmp_path_factory.mktemp("stand_in")
    sources = sorted((shared_data / "cifar10_subset" / "train").glob("*/*.png"))[:400]
    images = iter(sources * 2)
    for info in DATASETS.values():
        if info.layout == "embedded":  # digits: in scikit-learn
            continue
        if info.layout == "idx":  # MNIST-style IDX files, gzipped, grayscale
            folder = root / info.folder_names[0]
            for prefix, per_class in (("train", 2), ("t10k", 1)):
                labels = [c for c in range(info.n_classes) for _ in range(per_class)]
                pixels = [np.asarray(Image.open(next(images)).convert("L").resize((info.image_size,) * 2))
                          for _ in labels]
                _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.stack(pixels))
                _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.asarray(labels, dtype=np.uint8))
            continue
        folder, classes = root / info.stem, [f"class_{i:03d}" for i in range(info.n_classes)]
        for split, per_class in ((info.train_folder, 2), (info.valid_folder, 1)):
            for c in classes:
                (folder / split / c).mkdir(parents=True, exist_ok=True)
                for i in range(per_class):
                    shutil.copy(next(images), folder / split / c / f"{i}.png")
    return root


def _write_idx(path, array):
    """An unsigned-byte IDX file (MNIST's format), gzipped."""
    import gzip
    import struct
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def distinct(specs):
    """One spec per group of specs that differ only in lr, epochs and labels."""
    seen, out = set(), []
    for spec in specs:
        d = spec.to_dict()
        for key in ("name", "note", "lr", "epochs"):
            d.pop(key)
        d["sessions"] = [{k: v for k, v in s.items() if k not in ("epochs", "lr")} for s in d["sessions"]]
        key = repr(sorted(d.items()))
        if key not in seen:
            seen.add(key)
            out.append(spec)
    return out


class StopAfterFirstBatch(Callback):
    """Stop each fit after its first training batch; keep what the test checks."""
    order = 99

    def __init__(self):
        self.losses, self.learn_seen, self.moved = [], None, []

    def before_fit(self):
        self.learn_seen = self.learn
        self.start = [p.detach().clone() for p in self.learn.model.parameters()]

    def after_batch(self):
        if not self.training:
            return
        self.losses.append(float(self.learn.loss.detach()))
        self.moved.append(any(not torch.equal(a, p.detach()) for a, p in zip(self.start, self.learn.model.parameters())))
        raise CancelFitException()


def _out_features(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].out_features


def one_batch(spec, stand_in):
    """The probe of ``spec``'s tiny run, stopped after its first batch."""
    probe = StopAfterFirstBatch()
    train(tiny(spec), 0, data_dir=stand_in, device="cpu", extra_cbs=[probe], num_workers=0)
    return probe


def _radam_leaderboard_spec():
    return next(s for s in EXPERIMENTS["imagenette_leaderboard"].specs("full") if s.optimizer == "radam")


_KEPT = {}  # the radam leaderboard spec's probe, trained by the parametrized test, read again below


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_every_full_spec_trains_one_batch(experiment, stand_in):
    keep = _radam_leaderboard_spec().run_id(0)
    for spec in distinct(EXPERIMENTS[experiment].specs("full")):
        probe = one_batch(spec, stand_in)
        if spec.run_id(0) == keep:
            _KEPT[keep] = probe
        learn = probe.learn_seen
        label = f"{experiment} / {spec.name}"
        sessions = max(1, len(spec.sessions))
        assert len(probe.losses) == sessions, label  # one batch per fit, every fit ran
        assert all(math.isfinite(v) for v in probe.losses) and all(probe.moved), label
        assert _out_features(learn.model) == DATASETS[spec.dataset].n_classes, label
        uses_mish = any(isinstance(m, torch.nn.Mish) for m in learn.model.modules())
        assert uses_mish == (spec.arch in ("xresnet50_mish", "xse_resnext50_mish_sa_maxpool")), label
        ours = parse_optimizer_name(spec.optimizer)[0] is not None
        assert (lookahead_of(learn) is not None) == ours, label
        if spec.optimizer == "fastai_ranger":
            from fastai.optimizer import Lookahead as FastaiLookahead
            assert isinstance(learn.opt, FastaiLookahead), label


def test_runner_uses_the_spec_loss_and_augmentation(stand_in):
    from lookahead_fastai.registry.losses import make_loss
    spec = _radam_leaderboard_spec()
    # the same tiny run as in the test above (which keeps its probe): trained again only when run alone
    probe = _KEPT.pop(spec.run_id(0), None) or one_batch(spec, stand_in)
    learn = probe.learn_seen
    assert type(learn.loss_func) is type(make_loss(spec.loss))
    names = [type(t).__name__ for t in learn.dls.train.after_item.fs]
    assert "FlipItem" in names and "RandomResizedCrop" in names
    assert not any(type(t).__name__ in ("Rotate", "Warp", "Brightness") for t in learn.dls.train.after_batch.fs)

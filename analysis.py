# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Predicting NAS-Bench-101 accuracy from the cell
#
# NAS-Bench-101 (Ying et al., ICML 2019) trained every cell of a space of
# 423,624 convolutional cells on CIFAR-10, three times, for 4, 12, 36 and 108
# epochs. A search method that could predict a cell's accuracy from its graph
# would need to train only a few hundred cells. This notebook asks how well
# cheap predictors do that: which encoding of the cell, which model, how many
# training cells, and how good the predicted top of the ranking is.
#
# **Data.** A schema-v1 HDF5 file: by default `data/nasbench_only108.hdf5`,
# converted from the official `nasbench_only108.tfrecord`
# (`python tfrecord_to_hdf5.py --download only108`), or
# `data/nasbench_full.hdf5`; the environment variable `NB101_DATA` names any
# other file in the same schema, partial ones included. Every number and
# figure below is computed from that file, so the prose says what to look for
# rather than what the values are.
#
# **How to use it.** Run the cells in order. Change a value in the
# parameters cell and rerun from there; write your own encoding in section 3
# and it joins the comparison of section 4.

# %% [markdown]
# The modules of `utils/` do the work; figures share one style and are
# saved as they are shown.

# %%
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import display
from scipy.stats import kendalltau, spearmanr

from utils import notebook_support as support
from utils import plots
from utils.dataset import NASBench101
from utils.encodings import encode, register_encoding, register_feature_set
from utils.evaluation import noise_ceiling
from utils.notebook_support import resolve_data_file

# %% [markdown]
# Warnings and logs at WARNING level only; progress bars as text where
# ipywidgets is missing; `show` saves a figure before Jupyter displays it.

# %%
logging.basicConfig(level=logging.WARNING)
warnings.filterwarnings("ignore", message="IProgress not found")  # text bars
plots.use_style()
pd.options.display.precision = 3


def show(fig, name):
    """Save a figure to IMGS_DIR (vector and PNG); Jupyter then shows it."""
    plots.save_figure(fig, name, IMGS_DIR)


# %% [markdown]
# ## 1. Parameters
#
# Everything a run depends on is set in the next cell; a headless run
# overrides these values (see the README). A missing data file stops here,
# with the commands that make it.

# %% tags=["parameters"]
DATA_FILE = resolve_data_file()  # $NB101_DATA, else data/nasbench_only108.hdf5
IMGS_DIR = Path("imgs")  # figures are saved here as .svg and .png
BUDGET = 108  # training epochs of the labels
TRAIN_METRIC = "validation_accuracy"  # what the predictors learn
EVAL_METRIC = "validation_accuracy"  # what they are scored on
RUNS = "mean"  # how the repeated runs of a cell weigh: mean, first, 0, 1, 2
TRAIN_SIZE = 172  # training cells of the comparison in section 4
TRAIN_SIZES = [100, 172, 424, 1000]  # learning curves, section 5
SEEDS = [0, 1, 2, 3, 4]  # one random split per seed
MODELS = ["ridge", "rf", "xgb", "xgb_rank", "gcn"]
FEATURE_SETS = ["counts", "stats", "basic", "path", "adj_path", "all_params"]
EVALUATE = "rest"  # score on every cell not used for training
TOP_FRACTION = 0.05  # the "top cells" of sections 6 and 7
N_JOBS = 2  # fits in parallel
RESULTS_PATH = None  # a .jsonl file keeps finished fits across runs

# %% [markdown]
# ### The file and its labels
#
# What the file holds, and the labels the predictors will learn and be
# scored on. A label the file lacks is replaced by the closest one it
# has, and the replacement is said.

# %%
data = NASBench101.from_hdf5(DATA_FILE)
print(data)
support.label_coverage(data, wide=True)

# %%
train_label, note = support.pick_label(data, BUDGET, TRAIN_METRIC, "final", RUNS)
print("training label:  ", train_label, f"({note})" if note else "")
eval_label, note = support.pick_label(data, BUDGET, EVAL_METRIC, "final", RUNS)
print("evaluation label:", eval_label, f"({note})" if note else "")
accuracy = eval_label.values(data)
LABELS = dict(train_label=train_label, eval_label=eval_label, evaluate=EVALUATE)
RUN = dict(**LABELS, n_jobs=N_JOBS, results_path=RESULTS_PATH)

# %% [markdown]
# The table has one entry per label of the benchmark: the cells that have
# it, times the most training runs any cell has ("-": not in the file).
# What the file lacks against the whole benchmark, said rather than crashed
# on:

# %%
for line in support.missing_labels(data) or ["nothing: the file is complete"]:
    print("-", line)

# %% [markdown]
# Each gap narrows a later section rather than stopping it: a missing metric
# removes its figure with a note, a single run per cell removes the noise
# ceiling, and a partial file is flagged again where results meet published
# numbers (section 8).

# %% [markdown]
# ## 2. The data
#
# Before any predictor: what is there to predict, how noisy it is, and what
# comes for free.
#
# ### Accuracy
#
# The distribution of the evaluation label, and of the same metric at every
# budget the file has. The left panel counts on a log scale, so the few runs
# that diverged (near 10%, chance on CIFAR-10) stay visible; the right panel
# shows where nearly all cells lie.

# %%
by_budget = {}
for label in data.available_labels():
    if (label.metric, label.point) == (eval_label.metric, eval_label.point):
        values, _ = data.targets(label.budget, label.metric, label.point, RUNS)
        by_budget[f"{label.budget} epochs"] = values
show(plots.plot_accuracy_distribution(by_budget), "accuracy_distribution")

# %%
summary = pd.Series(accuracy).describe(percentiles=[0.01, 0.5, 0.9, 0.99])
print(f"cells below 80%: {np.mean(accuracy < 0.8):.2%}")
display(summary.to_frame(str(eval_label)).T)

# %% [markdown]
# The mass of cells sits in a narrow band near the top, with a long tail
# below: most of the space trains well, so a predictor has to order cells
# that differ by fractions of a percent. Longer budgets shift the band up
# and narrow it. The tail of failed cells is what a mean-squared-error fit
# chases; a rank metric such as Kendall tau weighs it no more than any other
# cells.

# %% [markdown]
# ### Size, training time and accuracy
#
# Parameter count and training time are known before (or cost nothing
# beside) a full training run; how far do they go?

# %%
time_label = [a for a in data.available_labels() if a.metric == "training_time"]
training_time = (
    data.targets(time_label[-1].budget, "training_time", "final")[0]
    if time_label
    else None
)
fig = plots.plot_cost_accuracy(data.trainable_parameters, accuracy, training_time)
show(fig, "size_time_accuracy")

# %%
cost = {"trainable parameters": data.trainable_parameters}
if training_time is not None:
    cost["training time"] = training_time
pd.Series(
    {name: spearmanr(v, accuracy, nan_policy="omit")[0] for name, v in cost.items()},
    name="Spearman rho with accuracy",
).to_frame()

# %% [markdown]
# Bigger and slower cells tend to be more accurate, but the spread at any
# size is wide: parameter count alone ranks the cells only loosely (its
# Spearman rho is printed above), and good cells exist across a wide range
# of sizes. Size and training time are tightly linked to each other (right
# panel), so training time adds little beyond the parameter count.

# %% [markdown]
# ### Validation against test accuracy
#
# Papers score predictors on validation or on test accuracy; where the file
# has both, how far apart are they?

# %%
budget = eval_label.budget
pair = support.validation_and_test(data, budget, RUNS)
if pair is None:
    print(f"no figure: the file lacks validation or test accuracy at {budget} epochs")
else:
    print(f"Kendall tau of validation and test: {kendalltau(*pair).statistic:.3f}")
    show(plots.plot_validation_vs_test(*pair), "validation_vs_test")

# %% [markdown]
# Where the figure is drawn, the cells lie along the diagonal but with a
# visible width even among the best cells: a predictor scored on test
# accuracy after training on validation accuracy meets this gap as noise it
# cannot learn.

# %% [markdown]
# ### The noise ceiling
#
# Two training runs of the same cell do not agree exactly. The agreement of
# runs bounds what any predictor of one run can reach on another.

# %%
ceiling = noise_ceiling(data, budget=eval_label.budget, metric=eval_label.metric)
if ceiling.empty:
    print("no noise ceiling: the file has fewer than two runs of the same cells")
    ceiling_tau = None
else:
    ceiling_tau = ceiling["kendall_tau"].mean()
    display(ceiling)

# %% [markdown]
# Where the file repeats runs, the table gives the Kendall tau between each
# pair of runs; a predictor evaluated on one run cannot be expected to go
# beyond it, and one evaluated on the mean of three runs gains from the
# averaged noise. On a file with one run the ceiling is unknown, and the
# scores below carry that noise unseen.

# %% [markdown]
# ## 3. Encodings
#
# An encoding turns each cell into a row of numbers. The feature sets
# compared below, their encodings and sizes:

# %%
support.feature_set_table(data, FEATURE_SETS)

# %% [markdown]
# How does each column relate to accuracy on its own? The left panel shows
# the rank correlation of every column of each encoding with the evaluation
# label; the right one the strongest columns.

# %%
ENCODINGS = ["op_counts", "graph_stats", "params", "adjacency", "ops_onehot", "path"]
correlations = support.column_correlations(data, ENCODINGS, accuracy)
show(plots.plot_correlations(correlations), "encoding_correlations")

# %% [markdown]
# Single columns are weak predictors: the strongest reach moderate rank
# correlations, and most columns of the large encodings (adjacency, paths)
# are near zero on their own. The strongest columns summarise the whole
# cell (how many vertices of each operation, graph statistics, the
# parameter count); single edges and paths matter only in combination,
# which is what the models below have to learn.

# %% [markdown]
# ### Your own encoding
#
# An encoding is a function of the dataset that returns one row per cell.
# Register it, put it in a feature set, and it joins the comparison below.
# This one counts, for each operation, the inner vertices that feed the
# output directly; the feature set `stats_plus` adds it to `stats`.


# %%
@register_encoding("output_inputs", description="ops into the output", invariant=True)
def output_inputs(dataset):
    X = encode(dataset, "graph").X  # aligned: the output is vertex 6
    into_output = X[:, :49].reshape(-1, 7, 7)[:, :, 6]
    op_class = X[:, 49:].reshape(-1, 7, 5)[:, :, 1:4]  # conv3x3, conv1x1, maxpool
    counts = np.einsum("nv,nvk->nk", into_output, op_class)
    return counts, [f"into_output_{op}" for op in ("conv3x3", "conv1x1", "maxpool")]


register_feature_set("stats_plus", ["stats", "output_inputs"])
COMPARED = [*FEATURE_SETS, "stats_plus"]
support.column_correlations(data, ["output_inputs"], accuracy)

# %% [markdown]
# The new columns' correlations are printed above; whether they help
# shows in the comparison that follows, where `stats_plus` stands beside
# `stats`.

# %% [markdown]
# ## 4. Predictors across feature sets
#
# Every model on every feature set, trained on the same `TRAIN_SIZE` cells
# per seed and scored by Kendall tau on the cells it did not see. (The GCN
# reads the cell as a graph and runs on its own `graph` layout only.)

# %%
grid = support.run_grid(data, MODELS, COMPARED, [TRAIN_SIZE], SEEDS, **RUN)
show(plots.plot_metric_heatmap(grid), "tau_heatmap")

# %% [markdown]
# Each square is the mean Kendall tau over seeds, with the standard deviation
# below it. The spread over seeds, per pair:

# %%
spread = grid.groupby(["model", "feature_set"], sort=False)["kendall_tau"]
table = spread.agg(["mean", "std", "min", "max", "count"]).round(3)
table.sort_values("mean", ascending=False)

# %% [markdown]
# Read the heatmap by columns and rows: a column that is bright for every
# model is an encoding that carries the signal; a row that is bright across
# encodings is a model that uses whatever it gets. Compare the compact,
# invariant encodings (counts, graph statistics) with the large one-hot ones
# (basic, path, adj_path) and with their union (all_params): a linear model
# needs the signal handed to it in a few columns, while trees can pick the
# useful columns out of hundreds, and only then gain from the union. Your
# own feature set sits in its own column. Differences smaller than the
# standard deviation over seeds are not differences.

# %% [markdown]
# ## 5. Learning curves
#
# How does each model improve with more training cells? Each model runs on
# its best feature set from section 4, over `TRAIN_SIZES`; the band is the
# range over seeds.

# %%
best = support.best_pairs(grid)
display(best)
curves = support.run_pairs(data, best, TRAIN_SIZES, SEEDS, **RUN)
show(plots.plot_learning_curves(curves, ceiling=ceiling_tau), "learning_curves")

# %% [markdown]
# Every model gains from more cells, faster at first than later; the order
# of the models can change along the way, as flexible models (boosted trees,
# the GCN) need more cells before they beat a linear fit. Where the bands of
# two models overlap, which cells were drawn matters as much as the choice
# between them.

# %% [markdown]
# ## 6. Predicted against true accuracy
#
# The best predictor at the largest training size, refitted on the split of
# the first seed, and its predictions for every evaluated cell.

# %%
largest = curves[curves["train_size"] == max(TRAIN_SIZES)]
top = support.best_pairs(largest).iloc[0]
size = max(TRAIN_SIZES)
predictions = support.fit_predict(
    data, top.model, top.feature_set, size, SEEDS[0], **LABELS
)
title = f"{top.model} on {top.feature_set}, {size} training cells"
display(pd.Series(predictions.attrs).to_frame(title).T)

# %% [markdown]
# Its scores are in the table; the figure shows every evaluated cell on the
# left and the top `TOP_FRACTION` by truth or by prediction on the right.

# %%
y_true, y_pred = predictions["y_true"], predictions["y_pred"]
scores = top.model in support.SCORE_MODELS
fig = plots.plot_predicted_vs_true(y_true, y_pred, TOP_FRACTION, title, scores)
show(fig, "predicted_vs_true")

# %% [markdown]
# Over the whole range the bulk of the cells follows the diagonal, but the
# predictions span a narrower range than the truth: weak cells are
# predicted too good. Runs that diverged (true accuracy near 10%) are
# predicted like any other cell: their failure belongs to the training run,
# not to the graph, and no encoding can see it. The zoom shows the part that
# matters for search: within the top cells the cloud is wide, and a share of
# the true top falls below the predicted threshold (misses, red) while
# other cells take their places (false alarms, orange).

# %% [markdown]
# ## 7. What matters for search
#
# A search trains the cells the predictor ranks highest, so the question is
# how many of the predicted top k are truly in the top k, and at what cost.

# %%
ranked = {title: support.precision_curve(predictions["y_true"], predictions["y_pred"])}
show(plots.plot_precision_at_k(ranked, len(predictions)), "precision_at_k")

# %% [markdown]
# For the larger k the precision is far above that of a random order
# (dashed); for the smallest k it is low and jumps from one k to the next:
# the predictor finds the good region of the space more reliably than the
# very best cells in it. Over every model and training size:

# %%
metrics = ["kendall_tau", "precision_at_1pct", "precision_at_5pct"]
curves.pivot_table(index=["model", "train_size"], values=metrics, aggfunc="mean")

# %% [markdown]
# Quality beside cost: the median fit and prediction time of each model on
# each feature set in section 4.

# %%
show(plots.plot_cost_quality(grid), "cost_quality")

# %% [markdown]
# Each point is one model on one feature set (named beside it). Linear
# models fit and predict in a fraction of the time of forests and boosted
# trees, and neural models cost most. Prediction time grows with the cells
# ranked, which on the full space is the larger cost; where a cheap model is
# within the seed spread of the best, it is the better choice for a search
# loop that refits often.

# %% [markdown]
# ## 8. Where this stands
#
# Published numbers for the nearest protocol: predictors trained on N cells
# drawn at random from NAS-Bench-101 and scored by Kendall tau over all cells
# of the benchmark (training cells included), on validation accuracy at 108
# epochs. The values are
# those in Table 1 of Lu et al., *TNASP: A Transformer-based NAS Predictor
# with a Self-evolution Framework*, NeurIPS 2021, including their run of the
# Neural Predictor GCN of Wen et al. (ECCV 2020). Beside them, the mean tau
# of each model of section 5, on its best feature set, on this file.

# %%
published = support.PUBLISHED
print("published:", support.PUBLISHED_PROTOCOL)
print(f"this run:  train on {train_label}, score on {eval_label}, {EVALUATE!r}")
support.comparison_table(curves, published)

# %% [markdown]
# Is this comparison like for like? The differences of this run from the
# published protocol:

# %%
notes = support.comparison_notes(data, train_label, eval_label, EVALUATE, len(SEEDS))
for line in notes or ["none: same protocol, same data"]:
    print("-", line)
fig = plots.plot_learning_curves(curves, reference=published, ceiling=ceiling_tau)
show(fig, "published_comparison")

# %% [markdown]
# The list above is the answer to "like for like?": when it names nothing
# but the minor difference of evaluation cells (the full converted file,
# validation accuracy at 108 epochs, five seeds), the numbers stand beside
# the published ones up to the seeds and the cells drawn. Otherwise read the
# figure with its notes. One run per cell puts the run-to-run noise of
# section 2 into the targets and lowers tau for every model alike; a partial
# file is ranked among its own cells. On such a file compare the models
# with each other, and with the papers only as an order of magnitude.

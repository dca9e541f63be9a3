"""The analysis notebook: a clean headless run on the sample, and its support.

The run executes ``analysis.ipynb`` top to bottom in a fresh kernel on the
shared 20k-cell sample (one run per cell, validation accuracy only), with
small parameters injected after the cell tagged ``parameters``: 2 seeds,
training sizes 100 and 172, ridge and XGBoost, 2 feature sets (plus the one
the notebook registers itself). It takes about a minute on 2 cores.
Figures go to a temporary folder.
"""

import json
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pandas as pd
import pytest

from utils import notebook_support as support
from utils.dataset import NASBench101
from utils.evaluation import Label, run_experiments

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "analysis.ipynb"
SCRIPT = ROOT / "analysis.py"

#: Small parameters for the headless run; everything else is the default.
SMALL = {
    "SEEDS": [0, 1],
    "TRAIN_SIZE": 100,
    "TRAIN_SIZES": [100, 172],
    "MODELS": ["ridge", "xgb"],
    "FEATURE_SETS": ["stats", "adj_path"],
    "N_JOBS": 2,
}

FIGURES = [
    "accuracy_distribution",
    "size_time_accuracy",
    "encoding_correlations",
    "tau_heatmap",
    "learning_curves",
    "predicted_vs_true",
    "precision_at_k",
    "cost_quality",
    "published_comparison",
]


# -- the notebook as committed ------------------------------------------------


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] for cell in code)
    assert all(cell.execution_count is None for cell in code)


def test_notebook_and_script_are_paired():
    notebook = jupytext.read(NOTEBOOK)
    script = jupytext.read(SCRIPT)
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert [(c.cell_type, c.source) for c in notebook.cells] == [
        (c.cell_type, c.source) for c in script.cells
    ]


def test_one_parameters_cell_that_resolves_the_data_file():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [
        cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])
    ]
    assert len(tagged) == 1
    assert tagged[0].source.startswith("DATA_FILE = resolve_data_file()")
    first_code = next(c for c in notebook.cells if c.cell_type == "code")
    assert "import" in first_code.source  # imports only, then the parameters


def test_one_section_per_question():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    headings = [
        line
        for cell in notebook.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("## ")
    ]
    assert [h.split(".")[0] for h in headings] == [f"## {i}" for i in range(1, 9)]


# -- the headless run ---------------------------------------------------------


@pytest.mark.slow
def test_notebook_runs_clean_on_the_sample(sample_20k, tmp_path):
    imgs = tmp_path / "imgs"
    executed = support.run_notebook(
        NOTEBOOK,
        {**SMALL, "IMGS_DIR": str(imgs)},
        output=tmp_path / "analysis.ipynb",
        env={support.DATA_ENV: str(sample_20k)},
        timeout=600,
        cwd=ROOT,
    )

    # A fresh kernel, every cell once, in order, without an error.
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]

    # What the sample lacks is said, not crashed on.
    text = "\n".join(output.get("text", "") for output in outputs)
    assert "no noise ceiling" in text
    assert "lacks validation or test accuracy" in text
    assert "1 training run(s)" in text

    # Every figure shown once and saved as SVG and PNG, none in the repo.
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(FIGURES)
    for name in FIGURES:
        assert (imgs / f"{name}.png").stat().st_size > 0
        assert (imgs / f"{name}.svg").stat().st_size > 0
    assert not (imgs / "validation_vs_test.png").exists()


# -- the data file ------------------------------------------------------------


def test_missing_data_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(support.DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="NB101_DATA is unset") as error:
        support.resolve_data_file(root=tmp_path)
    assert "python tfrecord_to_hdf5.py --download only108" in str(error.value)


def test_missing_file_named_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(support.DATA_ENV, str(tmp_path / "nope.h5"))
    with pytest.raises(FileNotFoundError, match=r"nope\.h5 \(from NB101_DATA\)"):
        support.resolve_data_file(root=tmp_path)


def test_default_files_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv(support.DATA_ENV, raising=False)
    (tmp_path / "data").mkdir()
    full = tmp_path / "data" / "nasbench_full.hdf5"
    full.touch()
    assert support.resolve_data_file(root=tmp_path) == full.resolve()
    only108 = tmp_path / "data" / "nasbench_only108.hdf5"
    only108.touch()
    assert support.resolve_data_file(root=tmp_path) == only108.resolve()


def test_environment_and_argument_win(tmp_path, monkeypatch):
    given = tmp_path / "mine.h5"
    given.touch()
    monkeypatch.setenv(support.DATA_ENV, str(given))
    assert support.resolve_data_file(root=tmp_path) == given.resolve()
    other = tmp_path / "other.h5"
    other.touch()
    assert support.resolve_data_file(other, root=tmp_path) == other.resolve()


# -- labels on the sample -----------------------------------------------------


@pytest.fixture
def sample(sample_20k):
    return NASBench101.from_hdf5(sample_20k)


def test_pick_label_keeps_a_label_the_file_has(sample):
    label, note = support.pick_label(sample, 36, "validation_accuracy")
    assert label == Label(36, "validation_accuracy", "final", "mean")
    assert note == ""


def test_pick_label_falls_back_and_says_so(sample):
    label, note = support.pick_label(sample, 108, "test_accuracy", runs=0)
    assert label == Label(108, "validation_accuracy", "final", 0)
    assert note.startswith("the file has no test_accuracy@108/final; using")


def test_pick_label_refuses_a_file_without_accuracy(sample):
    metrics = np.array(sample.metrics)
    metrics[..., 1:] = np.nan
    timing_only = NASBench101(
        sample.hash,
        sample.num_vertices,
        sample.adjacency,
        sample.operations,
        sample.trainable_parameters,
        metrics,
    )
    with pytest.raises(ValueError, match="holds no accuracy; labels with data: "):
        support.pick_label(timing_only)


def test_validation_and_test_only_where_both_exist(sample):
    assert support.validation_and_test(sample) is None

    # Test accuracy for half the cells: the pair holds those cells only.
    metrics = np.array(sample.metrics)
    metrics[::2, 3, 0, 1, 3] = metrics[::2, 3, 0, 1, 2] - 0.01
    both = NASBench101(
        sample.hash,
        sample.num_vertices,
        sample.adjacency,
        sample.operations,
        sample.trainable_parameters,
        metrics,
    )
    validation, test = support.validation_and_test(both)
    assert len(validation) == len(test) == (len(sample) + 1) // 2
    np.testing.assert_allclose(validation - test, 0.01, atol=1e-6)


def test_missing_labels_of_the_sample(sample):
    notes = support.missing_labels(sample)
    assert notes[0] == "20,001 of the 423,624 cells of the space (4.7%)"
    assert "no metric train_accuracy, test_accuracy" in notes
    assert any(note.startswith("at most 1 training run(s)") for note in notes)


def test_label_coverage_wide(sample):
    table = support.label_coverage(sample, wide=True)
    assert table.shape == (8, 4)
    assert table.loc[("validation_accuracy", "final"), "4 epochs"] == "20,001 x 1"
    assert table.loc[("test_accuracy", "final"), "108 epochs"] == "-"


# -- predictors and tables ----------------------------------------------------


def test_fit_predict_matches_the_runner(sample):
    row = run_experiments(sample, ["ridge"], ["stats"], [100], [3], progress=False)
    frame = support.fit_predict(sample, "ridge", "stats", 100, 3)
    assert len(frame) == row["n_eval"].iloc[0]
    assert frame.attrs["kendall_tau"] == pytest.approx(row["kendall_tau"].iloc[0])
    assert set(frame.columns) == {"row", "hash", "y_true", "y_pred"}


def test_run_grid_gives_fixed_models_their_feature_set(monkeypatch):
    calls = []

    def fake_run(data, models, feature_sets, sizes, seeds, **kwargs):
        calls.append((tuple(models), tuple(feature_sets)))
        rows = [{"model": m, "feature_set": f} for m in models for f in feature_sets]
        return pd.DataFrame(rows)

    monkeypatch.setattr("utils.evaluation.run_experiments", fake_run)
    results = support.run_grid(None, ["gcn", "ridge"], ["stats"], [10], [0])
    assert calls == [(("ridge",), ("stats",)), (("gcn",), ("graph",))]
    assert list(results["model"]) == ["gcn", "ridge"]


def test_precision_curve_of_a_perfect_order():
    y = np.arange(1000.0)
    curve = support.precision_curve(y, y, ks=[1, 10, 100])
    assert list(curve["precision"]) == [1.0, 1.0, 1.0]
    assert list(curve["chance"]) == [0.001, 0.01, 0.1]


def test_comparison_table_and_notes(sample):
    results = run_experiments(
        sample, ["ridge"], ["counts"], [100, 424], [0, 1], progress=False
    )
    table = support.comparison_table(results)
    assert list(table.index) == [100, 172, 424]
    assert table.loc[172, "this file: ridge (counts)"] == ""
    assert table.loc[100, "this file: ridge (counts)"].startswith("0.")

    notes = support.comparison_notes(sample, Label(), Label(36), "rest", 2)
    assert len(notes) == 5
    assert "4.7% of the space" in notes[0]
    assert "1 training run(s)" in notes[1]
    assert "evaluation label is validation_accuracy@36/final/mean" in notes[2]
    assert notes[3].startswith("evaluation cells: 'rest', where the published")
    assert len(support.comparison_notes(sample, Label(), Label(), "all", 5)) == 2


# -- headless runs ------------------------------------------------------------


def test_run_notebook_needs_a_parameters_cell(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    path = tmp_path / "plain.ipynb"
    nbformat.write(notebook, path)
    with pytest.raises(ValueError, match="has no cell tagged 'parameters'"):
        support.run_notebook(path, {"x": 2})


def test_run_notebook_injects_parameters_and_environment(tmp_path):
    cells = [
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import os, json\nprint(json.dumps([x, os.environ['NB_TEST']]))"
        ),
    ]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    executed = support.run_notebook(
        path, {"x": [2, 3]}, output=tmp_path / "out.ipynb", env={"NB_TEST": "yes"}
    )
    assert json.loads(executed.cells[-1].outputs[0]["text"]) == [[2, 3], "yes"]
    assert (tmp_path / "out.ipynb").exists()
    assert nbformat.read(path, as_version=4).cells[0].source == "x = 1"


def test_command_line_parameters():
    assert support._parse_parameter("SEEDS=[0, 1]") == ("SEEDS", [0, 1])
    assert support._parse_parameter("EVALUATE=rest") == ("EVALUATE", "rest")
    with pytest.raises(Exception, match="expected NAME=VALUE"):
        support._parse_parameter("no equals sign")


def test_command_line_writes_to_results_by_default(tmp_path, monkeypatch):
    cells = [
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(x * 2)"),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "tiny.ipynb")
    monkeypatch.chdir(tmp_path)
    assert support.main(["tiny.ipynb", "-p", "x=21"]) == 0
    executed = nbformat.read(tmp_path / "results" / "tiny.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "42\n"

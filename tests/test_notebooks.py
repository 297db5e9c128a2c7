"""Notebook hygiene (the committed .ipynb mirror their jupytext sources) and papermill runs."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import papermill as pm
import pytest

from ssl_lib.sections import notebook_schema

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))


def _cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_is_in_sync_with_its_source_and_has_no_outputs(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.exists(), f"run `make notebooks` to generate {ipynb.name}"
    committed = nbformat.read(ipynb, as_version=4)
    assert _cells(committed) == _cells(jupytext.read(source)), f"{ipynb.name} is stale: run `make notebooks`"
    assert committed.metadata.kernelspec.name == "python3"
    assert not any(c.get("outputs") for c in committed.cells if c.cell_type == "code")
    assert sum("parameters" in c.metadata.get("tags", []) for c in committed.cells) == 1


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_parameters_cell_matches_the_declared_schema(source):
    declared = pm.inspect_notebook(str(source.with_suffix(".ipynb")))
    schema = notebook_schema(source.stem)
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    assert list(declared) == list(defaults)
    for name, info in declared.items():
        assert eval(info["default"]) == defaults[name], name


@pytest.fixture(scope="module")
def checkpoint(random_mini_spec):
    return random_mini_spec


def _papermill(args, tmp_path, notebook="linear"):
    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{notebook}.ipynb"), str(out), "--cwd", str(ROOT),
         "-k", "python3", "--no-progress-bar", *args],
        capture_output=True, text=True, cwd=tmp_path,
    )
    return proc, out


@pytest.mark.slow
def test_linear_notebook_runs_with_papermill_and_records_rows(checkpoint, tmp_path):
    results = tmp_path / "results.csv"
    proc, out = _papermill(["-p", "model", checkpoint, "-p", "dataset", "mini-digits", "-p", "n_boot", "0",
                            "-p", "results_path", str(results)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    nb = nbformat.read(out, as_version=4)
    html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
    assert "mini-digits" in html and "top1" in html
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert pngs, "the validation-curve figure is missing"
    import pandas as pd

    rows = pd.read_csv(results)
    assert set(rows.section) == {"linear", "calibration"}  # the run also records its calibration
    rows = rows[rows.section == "linear"]
    assert list(rows.dataset) == ["mini-digits"] and rows.value.iloc[0] > 30  # chance is 10%
    assert json.loads(rows.hyperparams.iloc[0])["C"] > 0 and rows.selected_on.iloc[0].startswith("val")


def _html_and_pngs(out):
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    html = "".join(o.get("data", {}).get("text/html", "") + o.get("data", {}).get("text/markdown", "") for o in outputs)
    return html, [o for o in outputs if "image/png" in o.get("data", {})]


def _run_page(tmp_path, notebook, *args):
    """Run ``notebook`` with ``args`` into a fresh results file: its HTML, its figures and its rows."""
    import pandas as pd

    results = tmp_path / "results.csv"
    proc, out = _papermill([*args, "-p", "results_path", str(results)], tmp_path, notebook)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return (*_html_and_pngs(out), pd.read_csv(results))


@pytest.mark.slow
def test_fewshot_notebook_runs_and_states_skipped_settings(checkpoint, tmp_path):
    import pandas as pd

    results = tmp_path / "results.csv"
    # mini-digits has about 180 images per class: 400 shots must be skipped with the reason
    proc, out = _papermill(["-p", "model", checkpoint, "-p", "dataset", "mini-digits", "-p", "shots", "5,400",
                            "-p", "n_episodes", "50", "-p", "results_path", str(results)], tmp_path, "fewshot")
    assert proc.returncode == 0, proc.stderr[-2000:]
    html, pngs = _html_and_pngs(out)
    assert "5-shot" in html and "skipped" in html and "fewer than 415 images" in html
    assert pngs, "the accuracy-vs-shots figure is missing"
    rows = pd.read_csv(results)
    assert list(rows.metric) == ["5way-5shot", "5way-400shot"]
    assert 30 < rows.value.iloc[0] <= 100 and np.isnan(rows.value.iloc[1])
    assert rows.ci_low.iloc[0] < rows.value.iloc[0] < rows.ci_high.iloc[0]


@pytest.mark.slow
def test_finetune_notebook_runs_and_records_the_chosen_point(checkpoint, tmp_path):
    import pandas as pd

    results = tmp_path / "results.csv"
    proc, out = _papermill(["-p", "model", checkpoint, "-p", "dataset", "mini-digits", "-p", "steps", "20",
                            "-p", "lrs", "0.1,0.01", "-p", "wds", "0", "-p", "n_boot", "0",
                            "-p", "results_path", str(results)], tmp_path, "finetune")
    assert proc.returncode == 0, proc.stderr[-2000:]
    html, pngs = _html_and_pngs(out)
    assert "mini-digits" in html and pngs
    rows = pd.read_csv(results)
    assert set(rows.section) == {"finetune", "calibration"}  # the run also records its calibration
    rows = rows[rows.section == "finetune"]
    assert list(rows.dataset) == ["mini-digits"] and rows.value.iloc[0] > 10  # chance is 10%
    assert json.loads(rows.hyperparams.iloc[0])["lr"] in (0.1, 0.01)
    assert rows.selected_on.iloc[0].startswith("val")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "modle", "byol"], "Unknown parameter of the linear notebook 'modle'. Did you mean 'model'?"),
        (["-p", "model", "byl"], "Unknown mini model 'byl'. Did you mean 'byol'?"),
        (["-p", "dataset", "mini-digit"], "Unknown dataset 'mini-digit'. Did you mean 'mini-digits'"),
        (["-p", "solver", "sklern"], "Unknown solver 'sklern'. Did you mean 'sklearn'"),
    ],
)
def test_bad_parameters_fail_with_one_line(args, message, tmp_path):
    proc, out = _papermill(args, tmp_path)
    assert proc.returncode != 0
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert len(errors) == 1
    assert message in errors[0]["evalue"]
    assert len(errors[0]["traceback"]) == 1, "expected a one-line error, not a traceback"


@pytest.mark.slow
def test_invariances_notebook_runs_and_records_rows(checkpoint, tmp_path):
    html, pngs, rows = _run_page(tmp_path, "invariances", "-p", "model", checkpoint, "-p", "n_images", "16",
                                 "-p", "n_reference", "300", "-p", "k", "2", "-p", "transforms", "hue,rotation")
    assert "16 images" in html and pngs
    assert sorted(rows.metric) == ["cosine:hue", "cosine:rotation", "mahalanobis:hue", "mahalanobis:rotation"]
    assert rows[rows.metric.str.startswith("cosine")].value.between(-1, 1).all()


@pytest.mark.slow
def test_retention_notebook_runs_and_records_rows(checkpoint, tmp_path):
    html, pngs, rows = _run_page(tmp_path, "retention", "-p", "model", checkpoint, "-p", "dataset", "mini-colour",
                                 "-p", "steps", "5")
    assert "5 inversion steps" in html and len(pngs) == 2  # reconstructions and probes
    rows = rows.set_index("metric")
    assert {"colour_mse_mean", "perceptual_random-vgg", "probe_r2:mean_red", "probe_r2:centroid_x"} <= set(rows.index)
    assert 0 < rows.loc["colour_mse_mean", "value"] < 255**2


@pytest.mark.slow
def test_calibration_page_reads_the_rows_of_the_linear_run(checkpoint, tmp_path):
    results = tmp_path / "results.csv"
    proc, _ = _papermill(["-p", "model", checkpoint, "-p", "dataset", "mini-digits", "-p", "n_boot", "0",
                          "-p", "results_path", str(results)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc, out = _papermill(["-p", "model", f"{checkpoint},byol", "-p", "results_path", str(results)], tmp_path,
                           "calibration")
    assert proc.returncode == 0, proc.stderr[-2000:]
    html, pngs = _html_and_pngs(out)
    assert "ece_linear_scaled" in html and "No calibration rows for `byol`" in html
    assert len(pngs) == 2  # the per-model table and the reliability diagrams


@pytest.mark.slow
def test_attention_notebook_runs_and_records_rows(checkpoint, tmp_path):
    html, pngs, rows = _run_page(tmp_path, "attention", "-p", "model", checkpoint, "-p", "n_images", "2",
                                 "-p", "stride", "4")
    assert "2 images" in html and len(pngs) == 2  # the maps and the diffusion plot
    assert list(rows.metric) == ["attentive_diffusion"] and 0 < rows.value.iloc[0] < 100


@pytest.mark.slow
def test_detection_notebook_runs_for_byol_and_draws_predictions(tmp_path):
    html, pngs, rows = _run_page(tmp_path, "detection", "-p", "model", "byol", "-p", "iterations", "4",
                                 "-p", "n_boot", "0")
    assert "frozen" in html and "finetune" in html and len(pngs) >= 2  # predictions drawn, loss curves
    assert set(rows.metric) == {f"{s}_{m}" for s in ("frozen", "finetune") for m in ("AP", "AP50", "AP75")}


@pytest.mark.slow
def test_dense_notebook_runs_for_byol_and_draws_predictions(tmp_path):
    import pandas as pd

    results = tmp_path / "results.csv"
    proc, out = _papermill(["-p", "model", "byol", "-p", "iterations", "5", "-p", "n_boot", "0",
                            "-p", "results_path", str(results)], tmp_path, "dense")
    assert proc.returncode == 0, proc.stderr[-2000:]
    html, pngs = _html_and_pngs(out)
    assert "mini-scenes" in html and "mini-normals" in html and len(pngs) >= 2
    rows = pd.read_csv(results)
    assert {"seg_mean_iou", "seg_pixel_acc", "sn_mean_err", "sn_median_err", "sn_within_11.25"} <= set(rows.metric)


TIMM_TINY = {"vit": "timm:vit_tiny_patch16_224?pretrained=false&size=32",
             "convnext": "timm:convnext_atto?pretrained=false&size=32"}
ADAPTER = {"vit": ("vit_tiny_patch16_224", "cls_token", "blocks.11", 16),
           "convnext": ("convnext_atto", "avgpool", "stages.3", None)}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(TIMM_TINY))
def test_timm_backbones_run_every_per_model_section_and_rows_carry_the_adapter(family, tmp_path):
    import pandas as pd

    model, results = TIMM_TINY[family], tmp_path / "results.csv"
    common = ["-p", "model", model, "-p", "dataset", "mini-digits", "-p", "results_path", str(results)]
    for notebook, args in (("linear", ["-p", "n_boot", "0"]),
                           ("fewshot", ["-p", "shots", "5", "-p", "n_episodes", "20"]),
                           ("finetune", ["-p", "steps", "3", "-p", "lrs", "0.01", "-p", "wds", "0", "-p", "n_boot", "0",
                                         "-p", "layer_decay", "0.65"])):
        proc, out = _papermill(common + args, tmp_path, notebook)
        assert proc.returncode == 0, f"{notebook}: {proc.stderr[-2000:]}"
        html, _ = _html_and_pngs(out)
        assert f"{ADAPTER[family][1]} over `{ADAPTER[family][2]}`" in html, notebook  # the adapter line
    proc, out = _papermill(["-p", "model", model, "-p", "results_path", str(results)], tmp_path, "calibration")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ece_linear_scaled" in _html_and_pngs(out)[0]
    rows = pd.read_csv(results)
    assert set(rows.section) == {"linear", "fewshot", "finetune", "calibration"}
    arch, pooling, layer, patch = ADAPTER[family]
    assert (rows.arch == arch).all() and (rows.pooling == pooling).all() and (rows.feature_layer == layer).all()
    assert (rows.input_size == 32).all() and (rows.patch_size.isna().all() if patch is None else (rows.patch_size == patch).all())
    assert json.loads(rows[rows.section == "finetune"].protocol_params.iloc[0])["layer_decay"] == 0.65


@pytest.mark.slow
def test_timm_backbones_run_the_study_level_pages_together(tmp_path):
    import pandas as pd

    results, models = tmp_path / "results.csv", ",".join(TIMM_TINY.values())
    proc, out = _papermill(["-p", "model", models, "-p", "n_images", "8", "-p", "n_reference", "400", "-p", "k", "2",
                            "-p", "transforms", "hue", "-p", "results_path", str(results)], tmp_path, "invariances")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc, out = _papermill(["-p", "model", models, "-p", "n_images", "2", "-p", "stride", "4",
                            "-p", "results_path", str(results)], tmp_path, "attention")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc, out = _papermill(["-p", "model", models, "-p", "dataset", "mini-colour", "-p", "steps", "3",
                            "-p", "results_path", str(results)], tmp_path, "retention")
    assert proc.returncode == 0, proc.stderr[-2000:]
    html, pngs = _html_and_pngs(out)
    assert "token grid (prefix tokens dropped) of `blocks.11`" in html and "feature map of `stages.3`" in html
    assert len(pngs) == 2  # reconstructions and probes
    rows = pd.read_csv(results)
    assert rows.groupby("section").model.nunique().to_dict() == {"attention": 2, "invariances": 2, "retention": 2}
    assert set(rows.pooling) == {"cls_token", "avgpool"}
    colour = rows[rows.metric == "colour_mse_mean"].set_index("model")
    shapes = {m: json.loads(e)["inversion_target"]["shape"] for m, e in colour.extra.items()}
    assert shapes == {TIMM_TINY["vit"]: [192, 2, 2], TIMM_TINY["convnext"]: [320, 1, 1]}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(TIMM_TINY))
def test_timm_backbones_run_detection_and_dense_and_rows_record_the_pyramid(family, tmp_path):
    import pandas as pd

    model, results = TIMM_TINY[family], tmp_path / "results.csv"
    pyramid = {"vit": "a ViTDet simple feature pyramid", "convnext": "the last four stages"}[family]
    for notebook, args in (("detection", ["-p", "iterations", "2", "-p", "batch_size", "2"]),
                           ("dense", ["-p", "iterations", "3"])):
        proc, out = _papermill(["-p", "model", model, "-p", "n_boot", "0", "-p", "results_path", str(results), *args],
                               tmp_path, notebook)
        assert proc.returncode == 0, f"{notebook}: {proc.stderr[-2000:]}"
        html, pngs = _html_and_pngs(out)
        assert f"**Pyramid**: {pyramid}" in html and f"{ADAPTER[family][1]} over `{ADAPTER[family][2]}`" in html
        assert len(pngs) >= 2, notebook  # examples and loss curves
    rows = pd.read_csv(results)
    assert set(rows.section) == {"detection", "dense"} and len(rows) == 6 + 7
    arch, pooling, layer, patch = ADAPTER[family]
    assert (rows.arch == arch).all() and (rows.feature_layer == layer).all() and (rows.input_size == 32).all()
    levels = {(r.section, r.dataset): json.loads(r.extra)["pyramid"] for r in rows.itertuples()}
    assert {p["kind"] for p in levels.values()} == {"plain" if family == "vit" else "hierarchical"}
    assert levels["detection", "mini-scenes"]["strides"] == levels["dense", "mini-scenes"]["strides"] == [4, 8, 16, 32]
    assert levels["dense", "mini-normals"]["strides"] == [4, 8, 16, 16]  # the mini normals preset dilates layer4


@pytest.mark.slow
@pytest.mark.parametrize("notebook", ["detection", "dense", "retention"])
def test_a_backbone_without_multi_scale_maps_is_refused_in_one_line(notebook, tmp_path):
    proc, out = _papermill(["-p", "model", "timm:mixer_s16_224?pretrained=false"], tmp_path, notebook)
    assert proc.returncode != 0
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1
    assert f"The {notebook} section needs multi-scale feature maps" in errors[0]["evalue"]

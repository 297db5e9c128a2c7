import math

from ssl_lib.results import COLUMNS, ResultRow, append_rows, read_results


def _row(value, model="byol", seed=0):
    return ResultRow(section="linear", model=model, dataset="mini-digits", metric="top1", value=value,
                     weights_sha256="abc", params_hash="p", seed=seed)


def test_append_replaces_rows_with_the_same_resume_key(tmp_path):
    path = tmp_path / "results.csv"
    append_rows(path, [_row(50.0), _row(60.0, model="swav")])
    table = append_rows(path, [_row(55.0)])
    assert len(table) == 2
    assert table.set_index("model").loc["byol", "value"] == 55.0
    append_rows(path, [_row(70.0, seed=1)])
    assert len(read_results(path)) == 3
    assert list(read_results(path).columns) == COLUMNS
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_missing_values_stay_nan(tmp_path):
    path = tmp_path / "results.csv"
    append_rows(path, [_row(50.0)])
    assert math.isnan(read_results(path).ci_low.iloc[0])


def test_older_tables_gain_the_adapter_columns_in_schema_order(tmp_path):
    path = tmp_path / "results.csv"
    old = [c for c in COLUMNS if c not in ("arch", "pooling", "feature_layer", "normalization", "input_size",
                                           "resize_size", "patch_size")]
    import pandas as pd
    from dataclasses import asdict

    pd.DataFrame([asdict(_row(50.0))])[old].to_csv(path, index=False)
    table = read_results(path)
    assert list(table.columns) == COLUMNS and table.pooling.isna().all()
    table = append_rows(path, [_row(60.0, model="swav")])
    assert list(table.columns) == COLUMNS


def test_every_row_of_a_run_carries_the_models_adapter():
    from ssl_lib.models import create_model
    from ssl_lib.sections._common import RowStamp

    model = create_model("timm:vit_tiny_patch16_224?pretrained=false&size=32")
    row = RowStamp("linear", model, seed=0).row(dataset="mini-digits", metric="top1", value=1.0)
    assert (row.arch, row.pooling, row.feature_layer, row.normalization, row.input_size, row.resize_size,
            row.patch_size) == ("vit_tiny_patch16_224", "cls_token", "blocks.11", "inception", 32, 35, 16)

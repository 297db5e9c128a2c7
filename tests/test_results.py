import math

import pytest

from ssl_lib.exceptions import SSLLibError
from ssl_lib.results import COLUMNS, ResultRow, SchemaError, append_rows, parsed, read_results


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
    table = read_results(path)
    assert math.isnan(table.ci_low.iloc[0])
    # counts a row does not have are missing, not zero (a mean over rows would otherwise be wrong)
    assert table.n_train.isna().all() and table.n_eval.isna().all() and math.isnan(table.source_top1.iloc[0])


def test_protocol_and_source_accuracy_are_columns_and_json_is_parsed_at_read_time(tmp_path):
    path = tmp_path / "results.csv"
    row = ResultRow(section="calibration", model="byol", dataset="d", metric="ece_linear_scaled", value=3.0,
                    protocol="linear", source_top1=74.3, hyperparams='{"C": 0.1, "T": 1.5}',
                    protocol_params='{"n_shot": 20}', n_train=100)
    append_rows(path, [row])
    table = read_results(path)
    assert table.protocol.iloc[0] == "linear" and table.source_top1.iloc[0] == 74.3
    assert table.n_train.iloc[0] == 100
    hp = parsed(table, "hyperparams")
    assert hp["C"].iloc[0] == 0.1 and hp["T"].iloc[0] == 1.5 and parsed(table, "protocol_params").n_shot.iloc[0] == 20
    with pytest.raises(SchemaError, match="not a JSON column"):
        parsed(table, "metric")


@pytest.mark.parametrize(("row", "message"), [
    ({"section": ""}, "has no section"),
    ({"value": "50"}, "value must be a number"),
    ({"hyperparams": "C=0.1"}, "hyperparams must be JSON text"),
])
def test_appends_check_the_schema_and_write_nothing_when_it_fails(tmp_path, row, message):
    path = tmp_path / "results.csv"
    bad = ResultRow(**{"section": "linear", "model": "m", "dataset": "d", "metric": "top1", "value": 1.0, **row})
    with pytest.raises(SchemaError, match=message):
        append_rows(path, [bad])
    with pytest.raises(SchemaError, match="takes ResultRow objects"):
        append_rows(path, [{"section": "linear"}])
    assert not path.exists()


def test_a_foreign_or_unwritable_table_is_one_line(tmp_path):
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(SchemaError, match="not a results table"):
        read_results(foreign)
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    with pytest.raises(SSLLibError, match="Cannot create the results folder .*writable results_path"):
        append_rows(a_file / "results.csv", [_row(1.0)])


def test_older_tables_gain_the_adapter_columns_in_schema_order(tmp_path):
    path = tmp_path / "results.csv"
    old = [c for c in COLUMNS if c not in ("arch", "pooling", "feature_layer", "normalization", "input_size",
                                           "resize_size", "patch_size")]
    import pandas as pd
    from dataclasses import asdict

    pd.DataFrame([asdict(_row(50.0))])[old].to_csv(path, index=False)
    table = read_results(path)
    assert list(table.columns) == COLUMNS and (table.pooling == "").all() and table.input_size.isna().all()
    table = append_rows(path, [_row(60.0, model="swav")])
    assert list(table.columns) == COLUMNS


def test_every_row_of_a_run_carries_the_models_adapter():
    from ssl_lib.models import create_model
    from ssl_lib.sections._common import RowStamp

    model = create_model("timm:vit_tiny_patch16_224?pretrained=false&size=32")
    row = RowStamp("linear", model, seed=0).row(dataset="mini-digits", metric="top1", value=1.0)
    assert (row.arch, row.pooling, row.feature_layer, row.normalization, row.input_size, row.resize_size,
            row.patch_size) == ("vit_tiny_patch16_224", "cls_token", "blocks.11", "inception", 32, 35, 16)

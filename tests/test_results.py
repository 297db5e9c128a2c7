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

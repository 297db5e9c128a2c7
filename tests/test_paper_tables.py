"""The paper's tables appear in the report exactly as printed."""

import re
from pathlib import Path

import pytest

from ssl_lib.exceptions import UnknownNameError
from ssl_lib.paper_tables import list_paper_tables, paper_table, printed_table
from ssl_lib.sections.summary import paper_with_ci

ROOT = Path(__file__).resolve().parents[1]


def test_printed_tables_keep_the_papers_digits():
    assert printed_table("table4_detection_voc").loc["BYOL", "frozen_AP50"] == "82.01"
    assert printed_table("table5_dense").loc["BYOL", "seg_mean_iou"] == "0.2940"  # not 0.294
    assert printed_table("table1_linear").loc["Supervised", "imagenet_top1"] == "77.20"
    t = printed_table("table9_calibration_reconstruction_attention")
    assert t.loc["Correlation to ImageNet", "attentive_diffusion"] == "0.09"
    with pytest.raises(UnknownNameError, match="Unknown paper table"):
        printed_table("table11")


def test_few_shot_cells_show_value_and_interval_as_printed():
    cells = paper_with_ci("table2_fewshot_kornblith_5w20s")
    assert cells.loc["InsDis", "aircraft"] == "48.67 ± 0.93"  # two decimals, not 48.7
    assert list(cells.columns) == [c for c in paper_table("table2_fewshot_kornblith_5w20s").columns
                                   if c != "model" and not c.endswith("_ci")]


def test_the_paper_tables_page_shows_all_ten_tables():
    page = (ROOT / "book" / "paper_tables.md").read_text()
    shown = re.findall(r":file: \.\./ssl_lib/data/paper_tables/(\w+)\.csv", page)
    assert sorted(shown) == list_paper_tables()
    assert len(shown) == 10


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("*.py")))
def test_pages_that_draw_a_paper_heatmap_also_print_the_table(notebook):
    source = (ROOT / "notebooks" / notebook).read_text()
    drawn = re.findall(r'paper = paper_table\("(\w+)"\)', source)
    for name in drawn:
        assert f'printed_table("{name}")' in source, f"{notebook} shows {name} only rounded"


@pytest.mark.parametrize("hazard", ["*substring*", "3,060 lines", "scikit-learn 1.4", "end to end", "*test* predictions"])
def test_methods_page_says_what_the_papers_code_changes(hazard):
    """The code-level hazards of the fact sheet (§8) that move published numbers are documented."""
    page = (ROOT / "book" / "methods.md").read_text()
    section = page.split("## What the paper's code does that changes numbers", 1)[-1].split("\n## ", 1)[0]
    assert hazard in section

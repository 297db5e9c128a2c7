import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
import yaml

from ssl_lib.exceptions import ConfigError, UnknownNameError
from ssl_lib.models import build_arch
from ssl_lib.runner import plan_runs, run_study
from ssl_lib.study import load_study

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_studies_load():
    mini, paper = load_study("mini"), load_study(ROOT / "params" / "paper.yaml")
    assert mini.zoo == "mini" and "byol" in mini.models and "mini-colour" in mini.section("linear").datasets
    assert len(paper.models) == 14 and len(paper.section("linear").datasets) == 11


def test_bad_study_files_fail_with_one_line(tmp_path):
    with pytest.raises(UnknownNameError, match="Unknown study 'mnii'. Did you mean 'mini'"):
        load_study("mnii")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nzoo: mini\nmodels: [byol]\nsections: {linear: {}}\nmodles: []\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['modles'\]"):
        load_study(bad)
    bad.write_text("name: x\nzoo: mini\nmodels: [byol]\nsections: {linaer: {}}\n")
    with pytest.raises(UnknownNameError, match="Did you mean 'linear'"):
        load_study(bad)


def test_plan_has_one_run_per_section_and_model_and_a_summary(tmp_path):
    study = load_study("mini")
    assert list(study.sections)[:3] == ["linear", "finetune", "fewshot"] and "correlation" in study.sections
    runs = plan_runs(study, tmp_path, tmp_path / "results.csv")
    for section in ("linear", "finetune", "fewshot"):
        assert [r.model for r in runs if r.section == section] == [*study.models, None]
    assert [r.model for r in runs if r.section == "correlation"] == [None]
    assert [r.section for r in runs[-3:]] == ["correlation", "sensitivity", "scorecard"]  # they read the other sections' rows
    assert runs[0].parameters["model"] == "supervised" and runs[0].parameters["solver"] == "torch"
    fewshot = next(r for r in runs if r.section == "fewshot")
    assert fewshot.notebook.name == "fewshot.ipynb" and fewshot.title == "Few-shot: supervised"
    assert fewshot.parameters["shots"] == "5,20,50" and "solver" not in fewshot.parameters


@pytest.mark.slow
def test_run_study_executes_records_and_then_skips(tmp_path):
    ckpt = tmp_path / "rand.pth"
    torch.manual_seed(0)
    torch.save({"state_dict": build_arch("mini_resnet").state_dict()}, ckpt)
    study_file = tmp_path / "tiny.yaml"
    study_file.write_text(yaml.safe_dump({
        "name": "tiny", "zoo": "mini", "models": [f"file:{ckpt}?arch=mini_resnet"],
        "sections": {"linear": {"datasets": ["mini-digits"], "params": {"n_boot": 0}},
                     "fewshot": {"datasets": ["mini-digits"], "params": {"shots": "5", "n_episodes": 20}},
                     "correlation": {"params": {"n_boot": 100}}},
    }))
    book = tmp_path / "book"
    logs = []
    assert run_study(study_file, book_dir=book, out_dir=book / "results", log=logs.append) == 0
    outputs = sorted(p.name for p in (book / "results" / "linear").glob("*.ipynb"))
    assert outputs == ["file_" + str(ckpt).strip("/").replace("/", "_") + "_arch_mini_resnet.ipynb", "summary.ipynb"]
    rows = pd.read_csv(book / "results" / "results.csv")
    assert sorted(set(rows.section)) == ["calibration", "fewshot", "linear"] and set(rows.dataset) == {"mini-digits"}
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    assert [c["file"] for c in toc["chapters"][1:4]] == ["results/linear/summary", "results/fewshot/summary",
                                                         "results/correlation/summary"]
    page = nbformat.read(book / "results" / "linear" / outputs[0], as_version=4)
    assert any(c.source.startswith("# Linear: file:") for c in page.cells if c.cell_type == "markdown")

    logs.clear()
    assert run_study(study_file, book_dir=book, out_dir=book / "results", log=logs.append) == 0
    assert sum("up to date" in line for line in logs) == 5, logs


def test_cli_lists_and_fails_with_one_line():
    run = lambda *a: subprocess.run([sys.executable, "-m", "ssl_lib", *a], capture_output=True, text=True)
    models = run("models")
    assert models.returncode == 0 and "mini/byol" in models.stdout and "paper/deepcluster-v2" in models.stdout
    datasets = run("datasets")
    assert datasets.returncode == 0 and "mini-colour" in datasets.stdout and "voc2007" in datasets.stdout
    bad = run("run", "params/mnii.yaml")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Unknown study" in bad.stderr
    dry = run("run", str(ROOT / "params" / "paper.yaml"), "--dry-run")
    # 14 models x (linear, finetune, fewshot, detection, dense) + 5 summaries + 6 study-level pages
    assert dry.returncode == 0 and "82 runs" in dry.stdout and "fewshot/swav" in dry.stdout
    lines = {line.split()[0]: line for line in dry.stdout.splitlines()[1:-1]}
    assert "datasets=voc07+12" in lines["detection/byol"] and '"preset": "paper"' in lines["detection/byol"]
    assert "chestx" in lines["fewshot/byol"] and '"steps": 5000' in lines["finetune/byol"]
    assert '"dataset": "imagenet-val"' in lines["attention/summary"]


def test_the_modern_study_mirrors_the_papers_datasets_and_lists_every_run():
    from ssl_lib.models import get_model_cfg, require_multiscale

    modern, paper = load_study("modern"), load_study("paper")
    assert modern.models[0] == "supervised" and get_model_cfg("supervised", zoo=modern.zoo) is not None
    for section in ("linear", "finetune", "fewshot", "detection", "dense", "retention"):
        assert modern.section(section).datasets == paper.section(section).datasets
    assert {"correlation", "scorecard"}.isdisjoint(modern.sections)  # no ImageNet top-1 on the timm cards yet
    cards = {m: get_model_cfg(m, zoo=modern.zoo) for m in modern.models}  # the tags exist in timm; nothing downloads
    # every model offers the multi-scale maps detection, dense and retention read
    assert [require_multiscale(c, "dense") for c in cards.values()] == ["resnet"] + ["plain"] * 5 + ["hierarchical"]
    assert [c.pooling for c in cards.values()] == ["avgpool"] + ["cls_token"] * 5 + ["avgpool"]
    assert {c.input_size for c in cards.values()} == {224}
    assert cards["timm:vit_base_patch16_clip_224.openai"].normalization == "clip"
    dry = subprocess.run([sys.executable, "-m", "ssl_lib", "run", str(ROOT / "params" / "modern.yaml"), "--dry-run"],
                         capture_output=True, text=True)
    # 7 models x (linear, finetune, fewshot, detection, dense) + 5 summaries + calibration, invariances, retention,
    # attention
    assert dry.returncode == 0 and "44 runs" in dry.stdout, dry.stderr
    labels = {line.split()[0] for line in dry.stdout.splitlines()[1:-1]}
    assert {f"{s}/{m}" for s in ("linear", "finetune", "fewshot", "detection", "dense") for m in modern.models} <= labels


def test_the_methods_page_says_what_the_modern_study_changes():
    page = (ROOT / "book" / "methods.md").read_text()
    section = page.split("### The modern study", 1)[1].split("\n## ", 1)[0]
    for point in ("pooling", "input size", "resize", "normalisation", "class token", "518", "layer_decay",
                  "simple feature pyramid", "no dilation", "FREEZE_AT", "token grid"):
        assert point in section


def test_a_few_shot_only_dataset_in_the_linear_section_is_one_line(tmp_path):
    from ssl_lib.sections.linear import LinearParams, run_linear_section

    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "zoo": "paper", "models": ["byol"],
                                     "sections": {"linear": {"datasets": ["eurosat"]}}}))
    with pytest.raises(ConfigError, match="'eurosat' serves few-shot-only; the linear section takes") as err:
        run_linear_section(LinearParams(study=str(study), model="byol"))  # caught when the study loads
    assert "\n" not in str(err.value)


def test_a_new_section_is_one_registration_plus_its_notebook(tmp_path, monkeypatch):
    """What adding a section takes: one ``Section`` record and its notebook; the study file, the
    runner's plan, the parameters check and the table of contents follow from the record."""
    from dataclasses import dataclass

    from ssl_lib.sections import SECTIONS, Section

    @dataclass
    class ToyParams:
        study: str = "mini"
        greeting: str = "hello"
        n_boot: int = 10
        results_path: str = "book/results/results.csv"

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('study = "mini"\ngreeting = "hello"\nn_boot = 10\nresults_path = ""',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(f'toy page: {greeting} x{n_boot}')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebooks / "toy.ipynb")
    monkeypatch.setitem(SECTIONS._entries, "toy", Section("toy", "Toy", 95, ToyParams, run=lambda p: None,
                                                           per_model=False, compute=False, notebooks_dir=notebooks))
    study = tmp_path / "toy.yaml"
    study.write_text(yaml.safe_dump({"name": "toy", "zoo": "mini", "models": ["byol"],
                                     "sections": {"toy": {"params": {"greeting": "hi", "n_boot": 3}}}}))
    (run,) = plan_runs(load_study(study), tmp_path / "book" / "results", tmp_path / "book" / "results" / "results.csv")
    assert run.section == "toy" and run.model is None and run.parameters["greeting"] == "hi"
    assert run_study(study, out_dir=tmp_path / "book" / "results", book_dir=tmp_path / "book", fresh_kernels=True) == 0
    executed = nbformat.read(tmp_path / "book" / "results" / "toy" / "summary.ipynb", as_version=4)
    assert "toy page: hi x3" in "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "toy/summary" in (tmp_path / "book" / "_toc.yml").read_text()
    study.write_text(yaml.safe_dump({"name": "toy", "zoo": "mini", "models": ["byol"],
                                     "sections": {"toy": {"params": {"n_boot": -1}}}}))
    with pytest.raises(ConfigError, match="n_boot"):  # the record's parameters are checked when the study loads
        load_study(study)

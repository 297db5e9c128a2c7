"""Study files (``params/*.yaml``): which models, datasets and sections make up a study."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import yaml

from ._registry import unknown_name_message
from .exceptions import ConfigError, SSLLibError, UnknownNameError
from .paths import repo_root

__all__ = ["Study", "SectionCfg", "load_study", "find_study_file"]


@dataclass(frozen=True)
class SectionCfg:
    name: str
    datasets: tuple[str, ...]
    params: dict = field(default_factory=dict)  # notebook parameters for every run of the section


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    zoo: str
    models: tuple[str, ...]
    sections: dict[str, SectionCfg]
    seed: int
    path: Path

    def section(self, name: str) -> SectionCfg:
        if name not in self.sections:
            raise UnknownNameError(unknown_name_message("section", name, list(self.sections), f"(study {self.name!r})"))
        return self.sections[name]


def find_study_file(study: str | Path) -> Path:
    """A path, or a name looked up as ``params/<name>.yaml`` in the cwd and in the repository."""
    candidate = Path(study)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    for base in (Path.cwd() / "params", repo_root() / "params"):
        path = base / f"{study}.yaml"
        if path.exists():
            return path
    known = sorted(p.stem for p in (repo_root() / "params").glob("*.yaml"))
    raise UnknownNameError(unknown_name_message("study", str(study), known, "Pass a name from params/ or a path to a YAML file."))


def load_study(study: str | Path) -> Study:
    """The study file, validated completely: a study that loads can run (and ``--dry-run`` says so).

    Every key and type, the zoo, each model's card, each section's datasets (known, and of a task
    the section takes) and its parameters (names, types and ranges, as the notebooks check them)
    are checked here, each problem as one line naming the file. Loading is cached per file version.
    """
    path = find_study_file(study)
    return _load(str(path.resolve()), path.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _load(path_text: str, mtime_ns: int) -> Study:
    path = Path(path_text)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of keys (name, zoo, models, sections), got {type(raw).__name__}.")
    required = ("name", "zoo", "models", "sections")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ConfigError(f"{path} lacks the key(s) {missing}; a study needs {list(required)}.")
    allowed = {"name", "title", "zoo", "models", "sections", "seed", "description"}
    extra = set(raw) - allowed
    if extra:
        raise ConfigError(f"{path}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}.")
    _check_types(path, raw)
    from .sections import SECTIONS, in_report_order  # the sections import this module

    sections = {}
    for name, cfg in raw["sections"].items():
        if name not in SECTIONS:
            raise UnknownNameError(unknown_name_message("section", name, list(SECTIONS), f"(in {path})"))
        cfg = cfg or {}
        if not isinstance(cfg, dict) or set(cfg) - {"datasets", "params"}:
            raise ConfigError(f"{path}: section {name!r} takes a mapping with 'datasets' and/or 'params', got {cfg!r}.")
        datasets, params = cfg.get("datasets") or [], cfg.get("params") or {}
        if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
            raise ConfigError(f"{path}: {name}.datasets must be a list of dataset names, e.g. [mini-digits]; got {datasets!r}.")
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: {name}.params must be a mapping of notebook parameters, got {params!r}.")
        sections[name] = SectionCfg(name, tuple(datasets), dict(params))
    sections = {name: sections[name] for name in in_report_order(sections)}
    study = Study(
        name=str(raw["name"]), title=str(raw.get("title", raw["name"])), zoo=str(raw["zoo"]),
        models=tuple(raw["models"]), sections=sections, seed=int(raw.get("seed", 0)), path=path,
    )
    _check_contents(study)
    return study


def _check_types(path: Path, raw: dict) -> None:
    from .models import ZOOS

    if raw["zoo"] not in ZOOS:
        raise UnknownNameError(unknown_name_message("zoo", str(raw["zoo"]), list(ZOOS), f"(in {path})"))
    models = raw["models"]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise ConfigError(f"{path}: models must be a non-empty list of model names, e.g. [byol, supervised]; "
                          f"got {models!r}.")
    if len(set(models)) != len(models):
        raise ConfigError(f"{path}: models lists {sorted({m for m in models if models.count(m) > 1})} twice.")
    if not isinstance(raw["sections"], dict) or not raw["sections"]:
        raise ConfigError(f"{path}: sections must be a mapping of section name to settings, e.g. "
                          f"'sections: {{linear: {{datasets: [mini-digits]}}}}'; got {raw['sections']!r}.")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"{path}: seed must be a non-negative integer, got {seed!r}.")


def _check_contents(study: Study) -> None:
    """Models, datasets and section parameters, each as the run would check them."""
    from .models import get_model_cfg
    from .notebook import resolve_params
    from .sections import SECTIONS

    where = f"(in {study.path})"
    for model in study.models:
        try:
            get_model_cfg(model, zoo=study.zoo)
        except SSLLibError as err:
            raise type(err)(f"{err} {where}") from None
    for name, cfg in study.sections.items():
        record = SECTIONS.get(name)
        try:
            for dataset in cfg.datasets:
                record.check_dataset(dataset)
            if isinstance(cfg.params.get("dataset"), str) and cfg.params["dataset"] != "all":
                record.check_dataset(cfg.params["dataset"])
            values = {**cfg.params, "study": str(study.path)}
            if "model" in {f.name for f in fields(record.params)}:
                values.setdefault("model", study.models[0])
            resolve_params(name, values, study=study)
        except SSLLibError as err:
            raise type(err)(f"Section {name!r}: {err} {where}") from None

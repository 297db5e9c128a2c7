"""Study files (``params/*.yaml``): which models, datasets and sections make up a study."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ._registry import unknown_name_message
from .exceptions import ConfigError, UnknownNameError
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
    path = find_study_file(study)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    required = ("name", "zoo", "models", "sections")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ConfigError(f"{path} lacks the key(s) {missing}; a study needs {list(required)}.")
    allowed = {"name", "title", "zoo", "models", "sections", "seed", "description"}
    extra = set(raw) - allowed
    if extra:
        raise ConfigError(f"{path}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}.")
    from .sections import SECTIONS, in_report_order  # the sections import this module

    sections = {}
    for name, cfg in raw["sections"].items():
        if name not in SECTIONS:
            raise UnknownNameError(unknown_name_message("section", name, list(SECTIONS), f"(in {path})"))
        cfg = cfg or {}
        sections[name] = SectionCfg(name, tuple(cfg.get("datasets", ())), dict(cfg.get("params", {})))
    sections = {name: sections[name] for name in in_report_order(sections)}
    return Study(
        name=str(raw["name"]), title=str(raw.get("title", raw["name"])), zoo=str(raw["zoo"]),
        models=tuple(raw["models"]), sections=sections, seed=int(raw.get("seed", 0)), path=path,
    )

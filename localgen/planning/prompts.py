"""Render the prompt templates in `prompts/` (Jinja, StrictUndefined).

A missing variable is an error, never an empty string. Each template is identified in
the rows by its name and the hash of its source, so a changed prompt is visible in the
data. This module does not choose which template or which examples; `localgen.planning.plan` does.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2

from localgen.errors import TaskError


def default_prompts_dir() -> Path:
    """The templates: inside an installed wheel they are the package `localgen.prompts`
    (pyproject.toml maps it from the top-level prompts/ folder); in a source checkout
    they are that folder itself."""
    installed = importlib.util.find_spec("localgen.prompts")
    if installed is not None and installed.submodule_search_locations:
        return Path(next(iter(installed.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "prompts"


@dataclass(frozen=True)
class Template:
    name: str
    source: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:12]

    @cached_property
    def _compiled(self) -> jinja2.Template:
        env = jinja2.Environment(
            undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False
        )
        return env.from_string(self.source)

    def render(self, **variables: Any) -> str:
        try:
            return self._compiled.render(**variables).strip()
        except jinja2.UndefinedError as e:
            raise TaskError(f"prompt template '{self.name}': {e.message}") from None


class PromptLibrary:
    """Loads templates by name from a folder, once each."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or default_prompts_dir()
        self._cache: dict[str, Template] = {}

    def get(self, name: str) -> Template:
        if name not in self._cache:
            path = self.folder / f"{name}.jinja"
            if not path.is_file():
                raise TaskError(f"prompt template not found: {path}")
            source = path.read_text(encoding="utf-8")
            try:
                jinja2.Environment().parse(source)
            except jinja2.TemplateSyntaxError as e:
                raise TaskError(f"{path}:{e.lineno}: template syntax error: {e.message}") from None
            self._cache[name] = Template(name=name, source=source)
        return self._cache[name]

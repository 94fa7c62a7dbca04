"""The task file: what to generate. TOML, validated strictly (an unknown key is an error).

Example (see examples/ for complete ones):

    name = "support-tickets"
    context = "Tickets sent to the help desk of a B2B software company."

    [generation]
    count = 20
    strategy = ["zero-shot", "attributes"]   # or { few-shot = 2, contrastive = 1 }

    [attributes]
    tone = ["angry", "polite"]

    [labels.billing]
    description = "Invoices, charges, refunds, payment methods."
    instructions = "Mention an amount."

This module only reads and checks the file; planning requests is `localgen.planning.plan`.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from localgen.errors import TaskError
from localgen.planning.schema import MAX_TEXT_CHARS

CHARS_PER_WORD = 7

STRATEGIES: tuple[str, ...] = (
    "zero-shot",
    "few-shot",
    "contrastive",
    "attributes",
    "hierarchical",
    "from-documents",
    "rewrite",
)
# Strategies that show the user's real examples, and so need --seed-data.
NEEDS_EXAMPLES: tuple[str, ...] = ("few-shot", "contrastive", "rewrite")
# The strategy that shows one of the user's unlabeled documents, and so needs --documents.
FROM_DOCUMENTS = "from-documents"

# Letters, digits and a little punctuation: a label is written verbatim into the grammar.
LabelName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\w[\w .&/+:-]{0,63}$")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PoolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][\w-]{0,39}$")]
Pool = Annotated[list[Annotated[str, StringConstraints(min_length=1)]], Field(min_length=1)]


def _check_pools(pools: dict[str, list[str]]) -> dict[str, list[str]]:
    for name, values in pools.items():
        if len(set(values)) != len(values):
            raise ValueError(f"attribute pool '{name}' lists a value twice")
    return pools


class Label(_Strict):
    """One class of the classifier to be trained."""

    description: str = Field(min_length=1, description="What texts of this label are about.")
    instructions: str = ""  # extra instructions for this label only
    # Pools for this label only: a pool named like a task-wide one replaces it (to restrict
    # it), a new name adds a pool.
    attributes: dict[PoolName, Pool] = {}

    _pools = field_validator("attributes")(_check_pools)


class Contrastive(_Strict):
    """What the contrastive strategy shows: "similar to these, different from these"."""

    positives: int = Field(default=3, gt=0, le=20, description="Nearest real examples.")
    boundary: int = Field(default=2, ge=0, le=20, description="Nearest examples of other labels.")
    rejected: int = Field(default=2, ge=0, le=20, description="Rows from --reject.")
    earlier: int = Field(default=3, ge=0, le=20, description="Rows already generated.")


class Hierarchical(_Strict):
    """The first pass of the hierarchical strategy: a one-line summary of the text."""

    summary_words: int = Field(default=15, ge=3, le=60)

    @property
    def summary_max_chars(self) -> int:
        return min(7 * self.summary_words, 300)


class Generation(_Strict):
    """How many rows and how to sample them."""

    count: int = Field(default=20, gt=0, le=1_000_000, description="Rows to generate per label.")
    temperature: float = Field(default=0.9, ge=0.0, le=2.0)  # high enough for variety
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    # The prompt asks for at most this many words; the schema caps characters (below).
    max_words: int = Field(default=40, gt=0, le=2000)
    # Hard cap on characters of `text`, enforced by the grammar; None = 7 per word.
    max_chars: int | None = Field(default=None, ge=20, le=MAX_TEXT_CHARS)
    style: str = "a realistic message written by a real person"
    few_shot_k: int = Field(default=3, gt=0, le=20, description="Real examples per prompt.")
    # One strategy, a list (equal shares) or a table of weights: {few-shot = 2, attributes = 1}.
    strategy: dict[str, float] = {"zero-shot": 1.0}
    instructions: str = ""  # extra instructions for every label
    # Fill each label up to a target given the real data: "majority" or a number of rows.
    # Replaces `count` when set, and needs --seed-data.
    balance: Literal["majority"] | Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    contrastive: Contrastive = Contrastive()
    hierarchical: Hierarchical = Hierarchical()

    @field_validator("strategy", mode="before")
    @classmethod
    def _normalise_strategy(cls, value: object) -> object:
        weights = strategy_weights(value)
        unknown = [name for name in weights if name not in STRATEGIES]
        if unknown:
            choices = ", ".join(STRATEGIES)
            raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {choices}")
        if not weights or any(w <= 0 for w in weights.values()):
            raise ValueError("give at least one strategy, each with a positive weight")
        return weights

    @property
    def text_max_chars(self) -> int:
        # ~6 characters per English word plus a space (German words run longer: set max_chars).
        chars = self.max_chars if self.max_chars is not None else CHARS_PER_WORD * self.max_words
        return min(chars, MAX_TEXT_CHARS)


class Task(_Strict):
    """A whole task file."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    context: str = Field(min_length=1, description="One or two sentences about the domain.")
    # The language rows are written in: a code ("de", "fra") or a name ("German").
    language: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2)] | None = None
    generation: Generation = Generation()
    # Pools of the attributes strategy: each request draws one value from each pool.
    attributes: dict[PoolName, Pool] = {}
    labels: dict[LabelName, Label] = Field(min_length=1)

    _pools = field_validator("attributes")(_check_pools)

    @property
    def label_names(self) -> list[str]:
        return list(self.labels)

    def pools_for(self, label: str) -> dict[str, list[str]]:
        """The attribute pools that apply to `label`, task-wide ones first."""
        return {**self.attributes, **self.labels[label].attributes}


def language_name(value: str) -> str:
    """The English name of a language given by ISO 639 code or name ("de" -> "German");
    a name pycountry does not know is kept as written."""
    import pycountry

    value = value.strip()
    if len(value) in (2, 3) and value.isascii() and value.isalpha():
        key = "alpha_2" if len(value) == 2 else "alpha_3"
        found = pycountry.languages.get(**{key: value.lower()})
        if found is None:
            raise TaskError(f"unknown language code '{value}'; write the language's name instead")
        return str(found.name)
    try:
        return str(pycountry.languages.lookup(value).name)
    except LookupError:
        return value


def strategy_weights(value: object) -> dict[str, float]:
    """Normalise the spellings of a strategy mix (one name, a list, a table) to weights."""
    if isinstance(value, str):
        return {value: 1.0}
    if isinstance(value, list | tuple):
        if len(set(value)) != len(value):
            raise ValueError("a strategy is listed twice")
        return dict.fromkeys((str(v) for v in value), 1.0)
    if isinstance(value, dict):
        try:
            return {str(k): float(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise ValueError("strategy weights must be numbers") from None
    raise ValueError("strategy must be a name, a list of names or a table of weights")


# What a name checked against a pattern may hold, in words: pydantic's message quotes the regex.
NAME_RULES = {
    "labels": "a label name is letters, digits, _, spaces and . & / + : - "
    "(at most 64 characters, starting with a letter, digit or _)",
    "attributes": "a pool name is letters, digits, _ and - "
    "(at most 40 characters, starting with a letter or _)",
}


def _format_validation_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    # A key with a line break or other control character is quoted: the error stays one line.
    parts = [p if p.isprintable() else json.dumps(p) for p in loc]
    where = ".".join(parts) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling)"
    elif first["type"] == "string_pattern_mismatch" and loc[-1:] == ["[key]"] and len(loc) >= 3:
        kind, name = loc[-3], parts[-2]  # a key of [labels] or of an attributes table
        where = f"label {name!r}" if kind == "labels" else f"{'.'.join(parts[:-2])} {name!r}"
        msg = NAME_RULES.get(kind, "holds characters that are not allowed")
    more = f" (and {err.error_count() - 1} more problems)" if err.error_count() > 1 else ""
    return f"{where}: {msg}{more}"


def parse_task(text: str, source: str = "task") -> Task:
    """Parse and validate task TOML text."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TaskError(f"{source}: not valid TOML: {e}") from None
    if "labels" in raw and not raw["labels"]:
        raise TaskError(f"{source}: [labels] is empty; declare at least one label")
    try:
        task = Task.model_validate(raw)
    except ValidationError as e:
        raise TaskError(f"{source}: {_format_validation_error(e)}") from None
    if task.language is not None:
        try:
            language_name(task.language)  # an unknown code fails here, with the file's name
        except TaskError as e:
            raise TaskError(f"{source}: language: {e}") from None
    folded = [name.casefold() for name in task.labels]
    if len(set(folded)) != len(folded):
        raise TaskError(f"{source}: two labels differ only in letter case: {task.label_names}")
    return task


def load_task(path: str | Path) -> Task:
    """Read a task file from disk."""
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"task file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TaskError(f"{p}: not a UTF-8 text file") from None
    except OSError as e:
        raise TaskError(f"{p}: cannot read: {e.strerror}") from None
    return parse_task(text, source=str(p))

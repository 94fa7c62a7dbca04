"""Every setting of every stage, with its default, written once.

Each stage takes its settings as one frozen dataclass. The command line builds them from
its options and shows these defaults (`show_default`); the library reads them as given.
The task file's keys and their defaults are the task file's own (`localgen.planning.task`).
This module imports nothing heavy, so the command line reads it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from localgen.errors import UsageError

SEED = 0  # of the plan, of every request, of fine-tuning and of the bootstrap
RESAMPLES = 1000  # bootstrap resamples behind every confidence interval
# resamples of the real rows behind auto's gate on a weight (classify/mixing.py): fewer,
# as it runs on every training; its draws (seeded) decide what auto chooses
GATE_RESAMPLES = 200
LEVEL = 0.95  # of every confidence interval
KEEP_BUDGET = 4.0  # run --keep N generates at most this many times N rows per label
KEEP_ROUNDS = 8  # ... in at most this many rounds
# Requests in flight (taken by the engine, not yet answered; topped up as each finishes):
# 4x the batch vLLM runs at once on a CPU (256) and as many as on an H100 (1,024), so
# its batch stays full; memory holds this many, not the run (docs/measurements.md).
WINDOW = 1_024


@dataclass(frozen=True)
class EngineSettings:
    """Which engine generates, and how it is started."""

    name: str = "vllm"  # vllm, transformers, openai or fake
    backend: str | None = None  # None: the engine's default (first in engines.base.BACKENDS)
    max_model_len: int | None = None  # prompt + row, in tokens; None: the model's own, <= 8192
    seed: int = SEED
    base_url: str | None = None  # openai: the server, e.g. http://127.0.0.1:8000/v1
    allow_hosts: tuple[str, ...] = ()  # hosts besides loopback: a server, a Ray head
    concurrency: int = 32  # openai: requests in flight at once
    api_key_file: Path | None = None  # openai: the server's key; None: LOCALGEN_API_KEY, if set
    ca_cert: Path | None = None  # openai: verify an https server with this authority
    tensor_parallel_size: int = 1  # vllm: GPUs one model is split over
    replicas: int = 1  # >1 or a ray_address: that many engines, each in a Ray actor
    ray_address: str | None = None  # None: a private Ray instance on this machine


@dataclass(frozen=True)
class GenerateConfig:
    """`localgen plan` and `localgen generate`: what to ask for, and where rows go."""

    task_path: Path
    out: Path
    count: int | None = None  # rows per label; None = the task file's count
    seed: int = SEED
    strategy: tuple[str, ...] = ()  # equal shares of these; () = the task file's strategy
    seed_data: Path | None = None
    balance: str | int | None = None  # "majority" or a target; None = the task file's
    instructions: str = ""  # added to the task file's run-wide instructions
    language: str | None = None  # the language rows are written in; None = the task file's
    reject: Path | None = None  # rejected rows, shown as negatives by the contrastive strategy
    anchors: Path | None = None  # examples to write close variants of: count rows per anchor
    documents: Path | None = None  # unlabeled documents the from-documents strategy shows
    more: tuple[dict[str, int], ...] = ()  # rounds of rows per label added to the plan (--keep)
    text_column: str = "text"
    label_column: str = "label"
    model: str | None = None  # None = the built-in model
    engine: EngineSettings = field(default_factory=EngineSettings)
    max_retries: int = 2  # extra attempts, with a new seed, for an output that fails validation
    check_labels: bool = True  # ask the model which label each row belongs to (check_label)
    fit_margin: bool = False  # with the check, each row's fit_margin and fit_posterior
    formats: tuple[str, ...] = ("parquet",)
    shard_rows: int = 200  # rows per shard: a kill loses at most this many finished rows
    window: int = WINDOW  # requests in flight at once; memory holds this many
    overwrite: bool = False
    quiet: bool = False
    strict: bool = False  # a seed-data text with two labels is an error, not a warning

    def __post_init__(self) -> None:
        if self.count is not None and self.balance is not None:
            raise UsageError("give either --count or --balance, not both")


@dataclass(frozen=True)
class LabelConfig:
    """`localgen label`: the user's unlabeled documents, labelled by the local model."""

    documents: (
        Path  # a table with a text column, a .txt file (a document a line) or a folder of .txt
    )
    task_path: Path
    out: Path
    seed_data: Path | None = None  # real rows: examples in the prompt, and the few-shot classifier
    text_column: str = "text"
    label_column: str = "label"
    examples: int = (
        4  # real examples of each label in the prompt (fewer where the context is short)
    )
    per_label: int | None = None  # documents chosen per label at most; None: all both agree on
    # (without real rows nothing checks the labels: 64, documents.choose.UNCHECKED_PER_LABEL)
    limit: int | None = None  # label only the first N documents
    sample: int | None = None  # label N documents drawn at random (with the seed)
    seed: int = SEED
    model: str | None = None  # None = the built-in model
    engine: EngineSettings = field(default_factory=EngineSettings)
    formats: tuple[str, ...] = ("parquet",)  # parquet, csv
    shard_rows: int = 200  # documents per shard: a kill loses at most this many answers
    window: int = WINDOW
    overwrite: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.limit is not None and self.sample is not None:
            raise UsageError("give either --limit or --sample, not both")


@dataclass(frozen=True)
class CurateConfig:
    """`localgen curate`: which rules run, and their thresholds."""

    run_dir: Path
    real: Path | None = None  # None: the run's --seed-data, when it had one
    eval: Path | None = None
    text_column: str = "text"
    label_column: str = "label"
    skip: frozenset[str] = frozenset()
    min_words: int = 3
    max_words: int | None = None
    leak_words: int = 8  # consecutive words shared with a real example: a copied passage
    echo_words: int = 6  # consecutive words of the prompt's own instructions: an echo
    contamination: float = 0.90  # cosine to an evaluation row
    near_duplicate: float = 0.95  # cosine to an earlier kept row or a real example
    # The defaults of these three are what bench/real_data.py supports (docs/measurements.md).
    inconsistent: str = "flag"  # label-consistency: the model's own label differs; or "drop"
    on_topic_share: float = 0.75  # on-topic: the share of each label's rows kept, most likely first
    mislabeled: str = "confident"  # label-fidelity: "flag", "drop" or "confident" (below)
    judge_confidence: float = 0.9  # confident: the judge's probability for its label ...
    judge_accuracy: float = 0.8  # ... and its cross-validated accuracy on the real data
    keep: int | None = None  # surplus: at most this many rows per label; None: every one


@dataclass(frozen=True)
class ReportConfig:
    """`localgen report`: which rows to measure, against which real data."""

    run_dir: Path
    real: Path | None = None  # None: the run's --seed-data, when it had one
    source: str = "auto"  # auto, curated or raw (curation.rules.ROW_SOURCES)
    text_column: str = "text"
    label_column: str = "label"


@dataclass(frozen=True)
class TrainSettings:
    """How to fit: the encoder, the head's regularisation, and how the encoder is trained."""

    encoder: str | None = None  # None: the built-in all-MiniLM-L6-v2
    c: float = 1.0  # inverse regularisation strength of the head, as in scikit-learn
    balanced: bool = True  # class weights n / (k * rows of the label)
    # factor on each synthetic row's loss next to a real row's; "fit": each row its own,
    # the probability a classifier on the real rows alone gives its label; "auto": one
    # for all rows, chosen by cross-validation on the real rows, 0 included; where a
    # label has fewer real rows than folds, the largest factor 0 does not beat
    # (classify/mixing.py)
    synthetic_weight: str | float = "auto"
    # the same for the rows chosen from labelled documents (`train --documents`), chosen
    # on the real rows alone, apart from the synthetic weight; "auto" leaves them out only
    # where the real rows say they harm (the not_worse gate)
    documents_weight: str | float = "auto"
    # each label's description in the task file as one row of that label (`train --task`,
    # `run`), at this factor; 0 leaves them out (docs/measurements.md, "Label descriptions")
    descriptions_weight: str | float = 4.0  # factor of each label description's row; 0: none
    # frozen: the head on the encoder's vectors; fine-tune: encoder and head trained
    # together on the rows; setfit: the encoder tuned on pairs first (classify/setfit.py)
    method: str = "frozen"  # frozen, fine-tune or setfit
    epochs: int = 3  # fine-tune: passes over the rows
    pairs: int = 1000  # setfit: (same label / different label) pairs the encoder learns from
    learning_rate: float = 2e-5  # of the encoder when it is trained (fine-tune: head's is 100x)
    batch_size: int = 16  # rows (fine-tune) or pairs (setfit) per step
    seed: int = SEED

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            known = ", ".join(METHODS)
            raise UsageError(f"unknown training method {self.method!r}; one of {known}")
        for name in ("synthetic_weight", "documents_weight", "descriptions_weight"):
            try:
                object.__setattr__(self, name, parse_weight(getattr(self, name)))
            except ValueError as e:
                raise UsageError(str(e)) from None

    @property
    def tunes_encoder(self) -> bool:
        """The model brings its own encoder: texts must be embedded by it, not the base."""
        return self.method != "frozen"


@dataclass(frozen=True)
class TrainConfig:
    """`localgen train`: the training data and where the model goes."""

    out: Path
    real: Path | None = None
    synthetic: Path | None = None  # a run folder
    rows: str = "auto"  # of the run folder: auto, curated or raw
    text_column: str = "text"
    label_column: str = "label"
    settings: TrainSettings = field(default_factory=TrainSettings)
    strict: bool = False  # a real text with two labels is an error, not a warning
    documents: Path | None = None  # a label folder (its chosen rows) or a labeled file
    task: Path | None = None  # a task file: its label descriptions join as rows


@dataclass(frozen=True)
class RunConfig:
    """`localgen run`: generate, curate, train three ways, compare on real test data."""

    generation: GenerateConfig  # its seed_data is the real training data, out the folder
    test: Path
    settings: TrainSettings = field(default_factory=TrainSettings)
    resamples: int = RESAMPLES
    keep: int | None = None  # grow the run in rounds until this many rows per label pass
    keep_budget: float = KEEP_BUDGET  # ... generating at most this many times keep per label
    # unlabeled documents (labelled in the run, by its engine) or a label folder: the run
    # also trains on real + documents and on all three
    documents: Path | None = None

    def __post_init__(self) -> None:
        if self.keep is not None and self.generation.balance is not None:
            raise UsageError("give either --keep or --balance, not both")


@dataclass(frozen=True)
class BoostConfig:
    """`localgen boost`: rounds of generating variants of the validation mistakes."""

    task_path: Path
    real: Path
    validation: Path
    out: Path
    test: Path | None = None
    rounds: int = 3
    targets: int = 8  # validation examples to write variants of, per round
    variants: int = 2  # rows per target
    min_gain: float = 0.0  # a round is kept if validation macro-F1 rises by more than this
    text_column: str = "text"
    label_column: str = "label"
    seed: int = SEED  # round N generates with seed + N
    model: str | None = None
    engine: EngineSettings = field(default_factory=EngineSettings)
    max_retries: int = GenerateConfig.max_retries
    check_labels: bool = GenerateConfig.check_labels
    fit_margin: bool = GenerateConfig.fit_margin  # each round's rows with their fit scores
    overwrite: bool = False  # regenerate rounds a previous boost with other settings left
    settings: TrainSettings = field(default_factory=TrainSettings)
    strict: bool = False  # conflicting labels, or training texts in the test data: errors
    documents: Path | None = None  # a label folder or labeled file: trained on from round 0


@dataclass(frozen=True)
class ServeConfig:
    """`localgen serve`: vLLM's OpenAI-compatible server on a local model."""

    model: str | None = None  # a folder or a name; None = the built-in model
    host: str = "127.0.0.1"
    port: int = 8000
    # guidance follows both the row JSON schema (response_format) and the row regex
    # (`--engine openai --backend grammar`) exactly, and compiles them in milliseconds.
    backend: str = "guidance"
    max_model_len: int | None = EngineSettings.max_model_len
    seed: int = SEED
    name: str | None = None  # the served model name; None: the model's own name
    tensor_parallel_size: int = EngineSettings.tensor_parallel_size
    data_parallel_size: int = 1  # copies of the model, each on its own GPUs
    api_key_file: Path | None = None  # the key clients must send; None: LOCALGEN_API_KEY, if set
    no_auth: bool = False  # serve a non-loopback host without a key, knowingly
    ssl_certfile: Path | None = None  # TLS: the server's certificate (PEM) ...
    ssl_keyfile: Path | None = None  # ... and its private key; both or neither


METHODS = ("frozen", "fine-tune", "setfit")  # TrainSettings.method
METHOD_TITLES = {  # how the run table and the report name them
    "frozen": "frozen encoder + linear head",
    "fine-tune": "encoder and head fine-tuned",
    "setfit": "SetFit (encoder tuned on pairs) + linear head",
}


# besides a number: per row (by the real rows' classifier, or by the generating model's
# fit_posterior), or one factor chosen for all rows
WEIGHT_RULES = ("fit", "channel", "auto")


def parse_weight(value: str | float) -> str | float:
    """'fit', 'channel', 'auto' or a factor >= 0; ValueError otherwise."""
    if isinstance(value, str) and value.strip().lower() in WEIGHT_RULES:
        return value.strip().lower()
    try:
        weight = float(value)
    except ValueError:
        weight = -1.0
    if not weight >= 0 or weight == float("inf"):
        raise ValueError(f"a weight must be fit, channel, auto or a number >= 0, not {value}")
    return weight


def settings_markdown() -> str:
    """docs/settings.md: every setting above with its default and the comment beside it,
    read from this file, so the docs cannot drift from the code (a test compares them)."""
    import dataclasses
    import inspect
    import re
    import sys

    lines = [
        "# Settings and their defaults",
        "",
        "Generated from `localgen/config.py` by `python -m localgen.config > docs/settings.md`;",
        "the command-line options show the same defaults in `--help`.",
    ]
    module = sys.modules[__name__]
    for name in ("SEED", "RESAMPLES", "GATE_RESAMPLES", "LEVEL"):
        lines += ["", f"- `{name}` = {getattr(module, name)!r}"]
    for cls in (
        EngineSettings,
        GenerateConfig,
        LabelConfig,
        CurateConfig,
        ReportConfig,
        TrainSettings,
        TrainConfig,
        RunConfig,
        BoostConfig,
        ServeConfig,
    ):
        comment = re.compile(r"^    (\w+): [^\n=]+= [^\n#]+#\s*(.+)$", re.M)
        comments = dict(comment.findall(inspect.getsource(cls)))
        lines += ["", f"## {cls.__name__}", "", str(cls.__doc__), "", "| setting | default | |"]
        lines.append("|---|---|---|")
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f"`{f.default!r}`"
            elif f.default_factory is not dataclasses.MISSING:
                default = f"`{type(f.default_factory()).__name__}()`"
            else:
                default = "required"
            lines.append(f"| `{f.name}` | {default} | {comments.get(f.name, '')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")

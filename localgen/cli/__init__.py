"""The command line: a thin click layer over the library, in the library's stage order.

Each command parses its options (declared once, in `options`), builds the settings object
of its stage, makes one library call and prints what the library renders; data goes to
stdout, progress and messages to stderr, and a LocalgenError becomes one line and exit
code 1 (2 for usage). The commands live by stage: `generation` (plan, generate, show,
export), `documents` (label), `curation` (curate, report), `classify` (train, evaluate,
predict), `jobs` (run, boost), `models` (models ..., serve).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import click

from localgen import __version__
from localgen.cli import classify, curation, documents, generation, jobs, models
from localgen.cli.options import INTERRUPTED, echo_err
from localgen.offline import apply_offline_env


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="localgen")
@click.option("-v", "--verbose", is_flag=True, help="Show the engines' own log messages.")
def cli(verbose: bool) -> None:
    """Generate labeled, schema-constrained synthetic training text with a local LLM,
    curate it, and train a local classifier on it.

    Nothing leaves the machine: models and data come from local files, and network
    connections other than loopback are refused while localgen runs (except to an
    inference server or Ray cluster you name with --allow-host).

    \b
    Example:
      localgen plan examples/support-tickets/task.toml
      localgen generate examples/support-tickets/task.toml --out runs/tickets -n 50
      localgen show runs/tickets
      localgen run examples/support-tickets/task.toml --out runs/job \\
          --real examples/support-tickets/seed.csv --test examples/support-tickets/test.csv \\
          --text-column message --label-column team
    """
    level = "INFO" if verbose else "ERROR"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", level)
    logging.basicConfig(level=getattr(logging, level), format="%(name)s: %(message)s")
    if not verbose:
        # The engines' deprecation and performance hints are for their developers, not ours.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ warnings
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    Example:
      localgen completion bash > ~/.local/share/bash-completion/completions/localgen
      eval "$(localgen completion zsh)"       # in ~/.zshrc
      localgen completion fish > ~/.config/fish/completions/localgen.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # click knows the three shells the choice allows
    click.echo(completer(cli, {}, "localgen", "_LOCALGEN_COMPLETE").source())


for stage in (generation, documents, curation, classify, jobs, models):
    for command in stage.COMMANDS:
        cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    apply_offline_env()  # before anything can import huggingface_hub, transformers or vLLM
    try:
        cli.main(prog_name="localgen")
    except KeyboardInterrupt:  # outside a command, e.g. while importing
        echo_err(INTERRUPTED)
        sys.exit(130)

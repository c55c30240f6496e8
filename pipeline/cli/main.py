"""The `bottleneck` command group: `python cli.py COMMAND ...` or, once installed, `bottleneck COMMAND ...`.

The CLI package is the only code that reads arguments or prints. Every command takes `--json`,
which prints exactly one JSON object on stdout (anything else goes to stderr), and most take
`--cache-dir` (default `cache`, or the BOTTLENECK_CACHE_DIR environment variable). User mistakes
end with a one-paragraph message and exit status 1 (2 for bad arguments), never a traceback;
an unexpected exception says it is a bug (exit 70). BOTTLENECK_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow C++ chatter; Python errors still raise

import click

from pipeline.cli import (
    attack_commands,
    audit_commands,
    backbone_commands,
    cache_commands,
    data_commands,
    explain_commands,
    export_commands,
    finetune_commands,
    head_commands,
    interop_commands,
    predict_commands,
    quickstart_command,
    search_commands,
)
from pipeline.cli.plumbing import JsonAwareGroup, raise_keyboard_interrupt


@click.group(cls=JsonAwareGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Show the library's progress log on stderr.")
def main(verbose: bool):
    """Transfer learning by feature extraction: cache a frozen ImageNet CNN's bottleneck
    features once, then fit and compare many cheap classifier heads on them.

    \b
    Typical use:
      python cli.py extract path/to/dataset          # features -> cache/<name>-vgg16-...h5
      python cli.py fit-head cache/<file>.h5 --head logreg
      python cli.py report cache/<file>.h5
      python cli.py search path/to/dataset --budget 10m  # the best recipe, chosen on validation
      python cli.py fine-tune cache/<file>.h5 --from-head <head>.json --unfreeze block5
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)  # clean shutdown, like Ctrl-C


for module in (data_commands, cache_commands, interop_commands, head_commands, finetune_commands, predict_commands,
               export_commands, backbone_commands, quickstart_command, explain_commands, attack_commands,
               audit_commands):
    for command in module.COMMANDS:
        main.add_command(command)

for command in search_commands.COMMANDS:  # search: the best recipe, chosen on validation
    main.add_command(command)

"""Options that `avm run` and `avm node` share, so both spell and default them alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from avm_vm.runtime.core import RuntimeOptions
from avm_vm.vm.interpreter import JIT_MODES


def fuel_option(help: str) -> Callable[[Any], Any]:
    return click.option(
        "--fuel",
        type=click.IntRange(min=1),
        default=RuntimeOptions.fuel,
        show_default=True,
        help=help,
    )


max_value_bytes_option = click.option(
    "--max-value-bytes",
    type=click.IntRange(min=1),
    default=RuntimeOptions.max_value_bytes,
    show_default=True,
    help="Bytes of values one run may build (strings, lists, pairs, ...; see "
    "docs/semantics.md, Resource limits); past it the run fails with MemoryExhausted.",
)

jit_option = click.option(
    "--jit",
    type=click.Choice(JIT_MODES),
    default=RuntimeOptions.jit,
    show_default=True,
    help="Native code: off, auto (hot functions), on (everything it can, before running).",
)

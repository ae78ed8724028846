"""Options that `avm` and `avmc` share, so both spell and default them alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from avm_vm.diagnostics import COLOR_MODES
from avm_vm.runtime.core import RUN_FUEL, RuntimeOptions
from avm_vm.vm.interpreter import JIT_MODES

PACKAGE = "avm-toolchain"
__all__ = ["PACKAGE", "RUN_FUEL"]


def fuel_option(help: str, default: int = RuntimeOptions.fuel) -> Callable[[Any], Any]:
    return click.option(
        "--fuel",
        type=click.IntRange(min=1),
        default=default,
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

color_option = click.option(
    "--color",
    type=click.Choice(COLOR_MODES),
    default="auto",
    show_default=True,
    help="Colour diagnostics: auto (only on a terminal, and not when NO_COLOR is set), "
    "always, never.",
)


def version_option(prog: str, *lines: str) -> Callable[[Any], Any]:
    """`--version`: the package version, then ``lines`` (the formats the program speaks)."""
    message = "\n".join(["%(prog)s %(version)s (package %(package)s)", *lines])
    return click.version_option(package_name=PACKAGE, prog_name=prog, message=message)

"""A pytest plugin (registered by installing the package): the `avm_world` fixture.

It imports the runtime only when a test asks for the fixture, so loading the plugin costs
every other pytest run nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from avm_vm.api import World


@pytest.fixture
def avm_world() -> Callable[..., World]:
    """Make worlds as `World.load` does: ``avm_world("bank.avm", jit="off")``."""
    from avm_vm.api import World

    def make(*paths: str | os.PathLike[str], **options: Any) -> World:
        return World.load(*paths, **options)

    return make

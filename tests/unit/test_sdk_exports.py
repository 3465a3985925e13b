"""What the SDK's modules export: ``clients.sdk`` and ``clients.aio`` each offer every result
type of ``clients.types`` beside their client (callers import them from there), and every
name a module lists exists in it."""

from __future__ import annotations

import ast
import inspect
from types import ModuleType

import pytest

from clients import aio, sdk, types


@pytest.mark.parametrize("module", [sdk, aio, types])
def test_each_module_lists_its_names_once_and_they_exist(module: ModuleType) -> None:
    source = ast.parse(inspect.getsource(module))
    assigned = [
        node
        for node in source.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    assert len(assigned) == 1  # a second __all__ would silently replace the first
    names = module.__all__
    assert len(names) == len(set(names))
    assert all(hasattr(module, name) for name in names)


def test_both_clients_offer_every_result_type() -> None:
    results = set(types.__all__) - {"State"}
    assert results <= set(sdk.__all__) and results <= set(aio.__all__)

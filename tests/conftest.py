"""Bundle test modules that set ``BUNDLE`` run each test with that bundle's own ``scripts`` package importable,
as ``python -m monai.bundle`` would give it (every bundle has a top-level ``scripts`` package)."""

import pytest
from harness import bundle_scripts


@pytest.fixture(autouse=True)
def bundle_scripts_of_module(request):
    bundle = getattr(request.module, "BUNDLE", None)
    if bundle is None:
        yield
        return
    with bundle_scripts(bundle):
        yield

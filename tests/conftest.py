import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Every test session writes generated data and features into its own cache."""
    if "SSL_LIB_CACHE" not in os.environ or os.environ.get("SSL_LIB_TEST_KEEP_CACHE") != "1":
        os.environ["SSL_LIB_CACHE"] = str(tmp_path_factory.mktemp("ssl_cache"))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield

import os

import pytest
import torch

from ssl_lib.models import build_arch, create_model


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Every test session writes generated data and features into its own cache."""
    if "SSL_LIB_CACHE" not in os.environ or os.environ.get("SSL_LIB_TEST_KEEP_CACHE") != "1":
        os.environ["SSL_LIB_CACHE"] = str(tmp_path_factory.mktemp("ssl_cache"))
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny problems: one thread avoids OpenMP overhead (and spinning on shared CPUs). A module
    opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def random_mini_spec(tmp_path_factory):
    """A seeded random-init mini ResNet saved as a checkpoint: ``file:<path>?arch=mini_resnet``."""
    path = tmp_path_factory.mktemp("ckpt") / "rand.pth"
    torch.manual_seed(0)
    torch.save({"state_dict": build_arch("mini_resnet").state_dict()}, path)
    return f"file:{path}?arch=mini_resnet"


@pytest.fixture(scope="module")
def random_mini_model(random_mini_spec):
    return create_model(random_mini_spec)

"""Fixtures for the security tests: the node fixtures and a live podman engine."""

from tests.node.conftest import site, start_node  # noqa: F401
from tests.security.podman import podman_image  # noqa: F401

"""Snakemake's own executor-plugin test suite (simple and groups workflows) through `fedgen`.

Every job runs as a TES task at a real `fedgen node` that is the registry's default_site; the
outputs on the coordinator are references to files at the site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import httpx
import pytest
import snakemake.common.tests
from snakemake_executor_plugin_fedgen.executor import ExecutorSettings
from snakemake_executor_plugin_fedgen.reference import read_reference
from snakemake_interface_executor_plugins.settings import ExecutorSettingsBase

from .conftest import Federation, start_site


@pytest.mark.e2e
class TestWorkflows(snakemake.common.tests.TestWorkflowsLocalStorageBase):
    __test__ = True
    latency_wait = 2

    @pytest.fixture(autouse=True)
    def _default_site(self, tmp_path_factory, monkeypatch):
        base = tmp_path_factory.mktemp("fed")
        fed = Federation()
        site = start_site(base, "A", runtime="bwrap")
        fed.sites["A"] = site
        monkeypatch.setenv(site.token_env, site.token)
        self.site = site
        self.registry = fed.write_registry(base / "sites.yaml", default_site="A")
        try:
            yield
        finally:
            site.node.stop()

    def get_executor(self) -> str:
        return "fedgen"

    def get_executor_settings(self) -> Optional[ExecutorSettingsBase]:
        return ExecutorSettings(sites=str(self.registry), poll_interval_max=1.0)

    def run_workflow(self, test_name, tmp_path, deployment_method=frozenset()):
        super().run_workflow(test_name, tmp_path, deployment_method)
        # Beyond "it finished": the outputs are references to files that exist at the site.
        out = Path(tmp_path) / test_name / "test3.out"
        ref = read_reference(out)
        assert ref is not None and ref.site == "A"
        held = self.site.held(ref.url)
        assert held.is_file() and held.stat().st_size == ref.size
        assert held.is_relative_to(self.site.area)
        resp = httpx.get(
            self.site.node.url + "/tasks",
            params={"view": "BASIC"},
            headers={"Authorization": f"Bearer {self.site.token}"},
        )
        rules = sorted(t["tags"]["fedgen_rule"] for t in resp.json()["tasks"])
        if test_name == "groups":
            # Each group job (a -> b for one sample) is one task with both commands in order.
            assert rules == ["a,b", "a,b", "a,b", "c"]
        else:
            assert rules == ["a", "b", "c", "d", "d"]

"""Placeholder until the executor lands (issue 3)."""

from dataclasses import dataclass, field
from typing import Optional

from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.settings import (
    CommonSettings,
    ExecutorSettingsBase,
)

common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=True,
    job_deploy_sources=False,
    pass_envvar_declarations_to_cmd=False,
    auto_deploy_default_storage_provider=False,
    can_transfer_local_files=True,
)


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    sites: Optional[str] = field(
        default=None, metadata={"help": "Path to the site registry (sites.yaml)."}
    )


class Executor(RemoteExecutor):
    pass

"""Snakemake executor plugin ``fedgen`` (``snakemake --executor fedgen``).

Snakemake discovers executor plugins by the module-name prefix ``snakemake_executor_plugin_``;
this module only re-exports the implementation in :mod:`snakemake_fedgen.executor`.
"""

from snakemake_fedgen.executor.plugin import Executor, ExecutorSettings, common_settings

__all__ = ["Executor", "ExecutorSettings", "common_settings"]

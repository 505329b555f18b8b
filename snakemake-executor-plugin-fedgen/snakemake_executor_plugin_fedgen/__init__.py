"""Snakemake executor plugin ``fedgen`` (``snakemake --executor fedgen``).

Snakemake discovers executor plugins by the module-name prefix ``snakemake_executor_plugin_``
and reads ``Executor``, ``ExecutorSettings`` and ``common_settings`` from this module.

This distribution is also the bottom layer of snakemake-fedgen: the error hierarchy
(:mod:`.errors`), atomic file I/O (:mod:`.fileio`), the GA4GH TES models and client
(:mod:`.tes`), the site registry (:mod:`.sites`), references to site-held files
(:mod:`.reference`), DUO consent checks (:mod:`.duo`) and the Crypt4GH egress envelope
(:mod:`.crypt`). It depends on the Snakemake interface packages and small libraries only.
"""

from snakemake_executor_plugin_fedgen.executor import Executor, ExecutorSettings, common_settings

__version__ = "0.2.0"

__all__ = ["Executor", "ExecutorSettings", "common_settings"]

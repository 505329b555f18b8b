"""The TES task tags snakemake-fedgen sets and reads, defined once.

Every task the executor sends carries these four tags (``tesTask.tags``); the node, the status
poller, the resume index and the run's RO-Crate select and describe tasks by them. One more
tag, ``fedgen_crypt4gh_recipient`` (the coordinator's Crypt4GH public key for encrypted egress),
is defined next to the envelope code as
:data:`snakemake_executor_plugin_fedgen.crypt.RECIPIENT_TAG`: ``crypt`` sits below ``tes`` in the
plugin's layers.
"""

from __future__ import annotations

from typing import Final

#: The run a task belongs to (the executor's run id; ListTasks filters by it).
RUN_TAG: Final = "fedgen_run"
#: Hash of what determines a job's result: finds a job's task again after a crash.
JOB_KEY_TAG: Final = "fedgen_job_key"
#: The rule name(s) of the job (comma-separated for a group job).
RULE_TAG: Final = "fedgen_rule"
#: The registry name of the site the task was sent to.
SITE_TAG: Final = "fedgen_site"

FEDGEN_TAGS: Final = (RUN_TAG, JOB_KEY_TAG, RULE_TAG, SITE_TAG)

#: Task log ``metadata`` key a fedgen node sets: JSON ``{container path: sha256}`` of the
#: output files it published (TES output logs have no hash field).
OUTPUT_SHA256_KEY: Final = "fedgen_output_sha256"
#: Tag a fedgen node sets on every task it accepts (whatever the caller sent): ``approved:``
#: and the digests of the approved workflow releases its commands come from, or ``unapproved``.
CODE_TAG: Final = "fedgen_code"

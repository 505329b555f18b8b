"""The exception hierarchy of snakemake-fedgen.

Every error a user can meet derives from :class:`FedgenError`. Messages say what was found,
what was expected and what to do next, and name the file, site and line where that applies.
Messages never contain secrets (tokens, keys).

FedgenError
 +-- ConfigError          a node config, workflow config or CLI argument is wrong
 +-- RegistryError        the site registry (sites.yaml) is wrong
 +-- TesError             a TES endpoint answered with an error or not at all
 +-- StorageError         a URL cannot be read/written, or escapes the allowed roots
 +-- SiteDataError        individual-level data would move between sites or to the centre
 +-- EgressRefused        the airlock refused a file (it stays in quarantine at the site)
 +-- SumstatsError        a summary-statistics table is malformed (file, line, column)
 +-- HarmonisationError   studies cannot be combined (assembly, reference digest, ...)
 +-- GovernanceError      data-use terms (DUO) do not permit the declared purpose
 +-- AuthError            a token is missing, invalid, expired or lacks a visa
 +-- SimulationError      simulated data could not be generated as asked
 +-- ClusterError         the site's Slurm cluster refused a job or lost it (runtime slurm)
"""

from __future__ import annotations


class FedgenError(Exception):
    """Base class of every snakemake-fedgen error."""


class ConfigError(FedgenError):
    """A configuration file or argument is invalid."""


class RegistryError(FedgenError):
    """The site registry is invalid; the message names the site and key."""


class TesError(FedgenError):
    """A TES endpoint returned an error or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NodeProtocolError(FedgenError):
    """A TES server answered in a way no honest server does (endless pages, repeated tokens)."""


class StorageError(FedgenError):
    """A storage URL cannot be used (unknown scheme, outside allowed roots, unreadable)."""


class SiteDataError(FedgenError):
    """Individual-level data would leave its site (cross-site reference, reading a reference)."""


class EgressRefused(FedgenError):
    """The airlock refused to publish a file; it is kept in quarantine at the site."""


class SumstatsError(FedgenError):
    """A summary-statistics file is malformed; the message names file, line and column."""


class HarmonisationError(FedgenError):
    """Studies cannot be combined (different assemblies or reference digests)."""


class GovernanceError(FedgenError):
    """Data-use terms do not permit the declared purpose of the analysis."""


class AuthError(FedgenError):
    """Authentication or authorisation failed."""


class SimulationError(FedgenError):
    """Simulated data could not be generated as requested."""


class AccessDenied(AuthError):
    """The caller is authenticated but not permitted (e.g. no visa for the dataset): HTTP 403."""


class SecureAggregationError(FedgenError):
    """A secure-aggregation round cannot complete (a site dropped out, rounds or keys disagree)."""


class ProvenanceError(FedgenError):
    """A provenance record is missing or does not match its versioned JSON schema."""


class InvalidTask(FedgenError):
    """A TES task document is not valid for this node (the node answers HTTP 400)."""


class NodeBusy(FedgenError):
    """A node cannot take new work now; the caller may retry later."""


class QueueFull(NodeBusy):
    """The caller already has as many tasks waiting as the node allows (HTTP 429)."""


class DiskFull(NodeBusy):
    """The disk under the node's state directory is (nearly) full (HTTP 507)."""


class ClusterError(FedgenError):
    """The site's Slurm cluster refused a job or ended it without an exit status."""

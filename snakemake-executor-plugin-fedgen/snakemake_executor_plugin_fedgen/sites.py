"""The site registry (``sites.yaml``): which sites exist, how to reach them, what may leave them.

The registry is validated against ``schemas/sites.schema.json`` (JSON Schema draft 2020-12).
Every validation error names the file, the line, the site and the key, and unknown keys get a
did-you-mean. Tokens are never stored here: a site names the environment variable (or command)
that yields its token, and :meth:`Site.token` reads it at the moment a request needs it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from snakemake_executor_plugin_fedgen.errors import AuthError, RegistryError
from snakemake_executor_plugin_fedgen.reference import Reference, write_reference
from snakemake_executor_plugin_fedgen.tokens import token_cache_seconds

SCHEMA_PATH = Path(__file__).parent / "schemas" / "sites.schema.json"

# A token from token_command is reused this long (a JWT: until 30 s before its exp): short-lived
# JWTs live minutes, and running the command for every poll would dominate the coordinator's CPU.
TOKEN_COMMAND_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Dataset:
    """A site dataset: a site-side URL plus its data-use terms."""

    name: str
    url: str
    duo: tuple[str, ...] = ()
    assembly: str | None = None
    description: str | None = None
    format: str | None = None  # e.g. phenopackets: a folder of Phenopacket v2 files


#: Largest egress file the coordinator downloads from a site unless the registry says otherwise.
DEFAULT_MAX_EGRESS_BYTES = 1024**3


@dataclass(eq=False)
class Site:
    """One site of the registry (see the schema for the meaning of each field)."""

    name: str
    tes_url: str
    work_url: str
    token_env: str | None = None
    token_command: str | list[str] | None = None
    egress_url: str | None = None
    egress_read_url: str | None = None
    beacon_url: str | None = None
    egress: str = "allow-list"
    egress_allow: tuple[str, ...] = ("results/sumstats/**",)
    default_image: str | None = None
    max_parallel_tasks: int = 4
    max_egress_bytes: int = DEFAULT_MAX_EGRESS_BYTES
    datasets: dict[str, Dataset] = field(default_factory=dict)
    description: str | None = None
    crypt4gh_recipient_key: str | None = None
    public_key_x25519: str | None = None
    _token_cache: tuple[float, str] | None = field(default=None, repr=False)
    _token_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def is_egress(self, path: str) -> bool:
        """Return whether the Snakemake output ``path`` may leave this site."""
        if self.egress == "all":
            return True
        return any(glob_match(path, pattern) for pattern in self.egress_allow)

    @property
    def beacon(self) -> str:
        """The site's Beacon v2 base URL: ``beacon_url``, else the TES URL's origin + ``/api``."""
        if self.beacon_url:
            return self.beacon_url
        parts = urlsplit(self.tes_url)
        return f"{parts.scheme}://{parts.netloc}/api"

    def token(self) -> str | None:
        """Return the bearer token for this site, read now from its env var or command.

        Returns None when the site declares neither (a node without authentication).

        Raises
        ------
        AuthError
            The env var is unset/empty or the command failed. The message names the variable or
            command, never a token.
        """
        if self.token_command:
            with self._token_lock:
                now = time.monotonic()
                # The cache holds (reuse-until, token); a JWT is reused until shortly before exp.
                if self._token_cache and now < self._token_cache[0]:
                    return self._token_cache[1]
                token = _run_token_command(self.name, self.token_command)
                keep = token_cache_seconds(token, default=TOKEN_COMMAND_CACHE_SECONDS)
                self._token_cache = (now + keep, token)
                return token
        if self.token_env:
            value = os.environ.get(self.token_env, "").strip()
            if not value:
                raise AuthError(
                    f"site {self.name}: environment variable {self.token_env} (token_env) is not "
                    f"set or empty; export it with the bearer token for {self.tes_url}."
                )
            return value
        return None


@dataclass
class Registry:
    """A validated site registry."""

    path: Path
    sites: dict[str, Site]
    default_site: str | None = None
    version: int = 1

    def site(self, name: str) -> Site:
        """Return the site called ``name`` or raise a RegistryError listing the known sites."""
        try:
            return self.sites[name]
        except KeyError:
            hint = _did_you_mean(name, self.sites)
            raise RegistryError(
                f"{self.path}: site {name!r} is not in the registry (known sites: "
                f"{', '.join(sorted(self.sites))}){hint}."
            ) from None


def glob_match(path: str, pattern: str) -> bool:
    """Match a relative path against a glob where ``**`` spans directories and ``*`` does not."""
    path = path[2:] if path.startswith("./") else path
    return _glob_regex(pattern).fullmatch(path) is not None


@cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def load_registry(path: str | os.PathLike[str]) -> Registry:
    """Read and validate a site registry.

    Raises
    ------
    RegistryError
        The file is missing, is not YAML, or does not follow the schema; the message names the
        file, line, site and key and says how to fix it.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RegistryError(
            f"site registry {path} cannot be read ({exc.strerror}); pass an existing sites.yaml."
        ) from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise RegistryError(f"{path}{where}: not valid YAML ({exc}).") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a mapping with keys version and sites.")
    validate_registry_data(data, source=str(path), node=node)
    return _build(data, path)


def validate_registry_data(data: Any, *, source: str, node: yaml.Node | None = None) -> None:
    """Validate registry data against the schema; raise one RegistryError for the first error."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    # An unknown key (often a typo) explains a "required" error at the same place: report it first.
    errors = sorted(
        validator.iter_errors(data),
        key=lambda e: (e.validator != "additionalProperties", -len(e.absolute_path), str(e.path)),
    )
    if errors:
        raise RegistryError(_describe(errors[0], source=source, node=node))
    default = data.get("default_site")
    if default is not None and default not in data["sites"]:
        hint = _did_you_mean(default, data["sites"])
        raise RegistryError(
            f"{source}{_line(node, ['default_site'])}: default_site {default!r} is not a site of "
            f"the registry (known: {', '.join(sorted(data['sites']))}){hint}."
        )
    for name, site in data["sites"].items():
        if site.get("egress_url") and not site.get("egress_read_url"):
            raise RegistryError(
                f"{source}{_line(node, ['sites', name])}: site {name}: egress_url is set but "
                "egress_read_url is missing; add how the coordinator reads published outputs "
                "(e.g. http://HOST:PORT/fedgen/v1/egress)."
            )


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def _describe(error: Any, *, source: str, node: yaml.Node | None) -> str:
    path = [str(p) for p in error.absolute_path]
    where = ""
    if len(path) >= 2 and path[0] == "sites":
        where = f" site {path[1]}"
        key = ".".join(path[2:])
    else:
        key = ".".join(path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        unknown = extra[0]
        line = _line(node, [*path, unknown], key_line=True)
        hint = _did_you_mean(unknown, allowed)
        scope = f"{where} key" if where else " key"
        inside = f" under {key}" if key and not (where and len(path) == 2) else ""
        return (
            f"{source}{line}:{scope} {unknown!r}{inside} is not a known key{hint}; "
            f"allowed keys: {', '.join(allowed)}."
        )
    line = _line(node, path)
    what = f"{where} key {key}" if key else (where or " registry")
    return f"{source}{line}:{what}: {error.message}."


def _line(node: yaml.Node | None, path: list[str], *, key_line: bool = False) -> str:
    """Return ' line N' for the YAML node at ``path`` (the key's line when ``key_line``)."""
    current = node
    mark = None
    for part in path:
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                if str(k.value) == part:
                    mark = k.start_mark if key_line and part == path[-1] else v.start_mark
                    current = v
                    break
            else:
                break
        elif (
            isinstance(current, yaml.SequenceNode)
            and part.isdigit()
            and int(part) < len(current.value)
        ):
            current = current.value[int(part)]
            mark = current.start_mark
        else:
            break
    return f" line {mark.line + 1}" if mark else ""


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _build(data: dict[str, Any], path: Path) -> Registry:
    sites: dict[str, Site] = {}
    for name, raw in data["sites"].items():
        datasets = {
            ds_name: Dataset(
                name=ds_name,
                url=ds["url"],
                duo=tuple(ds.get("duo", ())),
                assembly=ds.get("assembly"),
                description=ds.get("description"),
                format=ds.get("format"),
            )
            for ds_name, ds in (raw.get("datasets") or {}).items()
        }
        sites[name] = Site(
            name=name,
            tes_url=raw["tes_url"].rstrip("/"),
            work_url=raw["work_url"].rstrip("/"),
            token_env=raw.get("token_env"),
            token_command=raw.get("token_command"),
            egress_url=(raw.get("egress_url") or "").rstrip("/") or None,
            egress_read_url=(raw.get("egress_read_url") or "").rstrip("/") or None,
            beacon_url=(raw.get("beacon_url") or "").rstrip("/") or None,
            egress=raw.get("egress", "allow-list"),
            egress_allow=tuple(raw.get("egress_allow", ("results/sumstats/**",))),
            default_image=raw.get("default_image"),
            max_parallel_tasks=int(raw.get("max_parallel_tasks", 4)),
            max_egress_bytes=int(raw.get("max_egress_bytes", DEFAULT_MAX_EGRESS_BYTES)),
            datasets=datasets,
            description=raw.get("description"),
            crypt4gh_recipient_key=raw.get("crypt4gh_recipient_key"),
            public_key_x25519=raw.get("public_key_x25519"),
        )
    return Registry(
        path=path,
        sites=sites,
        default_site=data.get("default_site"),
        version=int(data["version"]),
    )


def _run_token_command(site: str, command: str | list[str]) -> str:
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    shown = argv[0] if argv else "?"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthError(
            f"site {site}: token_command {shown!r} could not run ({exc.__class__.__name__}); "
            "fix the command in the registry."
        ) from None
    token = proc.stdout.strip()
    if proc.returncode != 0 or not token:
        # stderr is not quoted: a failing token helper may print partial secrets.
        raise AuthError(
            f"site {site}: token_command {shown!r} exited with {proc.returncode} and printed "
            f"{'no token' if not token else 'output'}; run it by hand to see why."
        )
    return token


__all__ = [
    "Dataset",
    "Registry",
    "Site",
    "glob_match",
    "load_registry",
    "validate_registry_data",
]


def write_dataset_reference(
    registry_path: str | os.PathLike[str], site: str, dataset: str, output: str | os.PathLike[str]
) -> Reference:
    """Write the reference to ``dataset`` of ``site`` (from the registry) at ``output``.

    This is how a workflow names a site's dataset as a rule input: the reference file is the
    coordinator's placeholder; the data stays at the site. ``fedgen sites ref`` calls this; a
    workflow with only the plugin installed can call it from a ``run:`` block of a localrule.
    """
    registry = load_registry(registry_path)
    entry = registry.site(site)
    if dataset not in entry.datasets:
        raise RegistryError(
            f"{registry_path}: site {entry.name} has no dataset {dataset!r}"
            f"{_did_you_mean(dataset, entry.datasets)}; known datasets: "
            f"{', '.join(sorted(entry.datasets)) or 'none'}."
        )
    found = entry.datasets[dataset]
    # A dataset URL ending in "/" is a directory (e.g. a folder of Phenopackets).
    ref = Reference(
        site=entry.name, url=found.url, dataset=found.name, is_directory=found.url.endswith("/")
    )
    write_reference(output, ref)
    return ref

"""Container image references: the grammar an image must follow and the site's allow-list.

Under ``docker``/``podman`` the task's ``image`` is handed to the engine's command line, so it
must be an image reference and nothing else: ``[host[:port]/]path[:tag][@algorithm:hex]`` as
the Docker distribution reference grammar defines it (lower-case path components, no spaces,
no leading ``-``). Anything else (``--privileged``, ``alpine --volume=/:/host``) is refused
before it can become an engine option.

Allow-list patterns are fnmatch patterns on the whole reference, except that a pattern
pinned by digest (``name@sha256:...``) matches only that exact digest: the name (and tag, if
the pattern has one) may be a pattern, the digest never is.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from snakemake_executor_plugin_fedgen.errors import InvalidTask

# github.com/distribution/reference, regexp.go (ASCII only).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII
)
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference."""

    name: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def parse_image(image: object, *, what: str = "image") -> ImageRef:
    """Parse ``image`` as a container image reference; InvalidTask if it is not one."""
    if not isinstance(image, str) or not image:
        raise InvalidTask(f"{what} must be a non-empty image reference, got {image!r}.")
    match = _REFERENCE.fullmatch(image)
    if match is None or image.startswith("-"):
        raise InvalidTask(
            f"{what} {image!r} is not a valid image reference "
            "([registry/]name[:tag][@sha256:digest], lower-case name, no spaces or options)."
        )
    name = match["name"]
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidTask(f"{what}: the image name is longer than {MAX_NAME_LENGTH} characters.")
    return ImageRef(name, match["tag"], match["digest"])


def _pattern_matches(pattern: str, ref: ImageRef) -> bool:
    if "@" not in pattern:
        return fnmatch.fnmatchcase(str(ref), pattern)
    name_part, _, digest = pattern.rpartition("@")
    if ref.digest is None or ref.digest.lower() != digest.lower():
        return False
    named = ref.name if ref.tag is None else f"{ref.name}:{ref.tag}"
    # "name@sha256:..." also accepts "name:tag@sha256:..." (the digest decides what runs).
    return fnmatch.fnmatchcase(named, name_part) or (
        ":" not in name_part.rpartition("/")[2] and fnmatch.fnmatchcase(ref.name, name_part)
    )


def image_allowed(ref: ImageRef, patterns: Sequence[str]) -> bool:
    """True if ``ref`` matches one of the allow-list ``patterns``."""
    return any(_pattern_matches(p, ref) for p in patterns)


def check_image(image: object, allowed: Sequence[str], *, what: str = "image") -> ImageRef:
    """Parse ``image`` and require it on the allow-list ``allowed`` (empty: refuse all)."""
    ref = parse_image(image, what=what)
    if not image_allowed(ref, allowed):
        shown = ", ".join(allowed) if allowed else "empty"
        raise InvalidTask(
            f"{what} {image!r} is not on this site's image allow-list ({shown}); ask the site "
            "to approve it or use an approved image."
        )
    return ref


def pinned(pattern: str) -> bool:
    """True if an allow-list pattern names one image by digest."""
    if "@" not in pattern:
        return False
    digest = pattern.rpartition("@")[2]
    return re.fullmatch(_DIGEST, digest, re.ASCII) is not None

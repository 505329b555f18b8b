"""``fedgen node``: a GA4GH TES 1.1 server that runs a site's tasks next to the site's data.

Modules: :mod:`.config` (node.yaml), :mod:`.app` (HTTP API), :mod:`.store` (SQLite),
:mod:`.scheduler` (core budget, task life cycle), :mod:`.runtime` (bwrap/host/docker/podman),
:mod:`.storage` (inputs and outputs), :mod:`.auth`, :mod:`.audit`, :mod:`.process` (start a node
as a subprocess, for tests and the demo) and :mod:`.cli` (the ``fedgen node`` subcommand).
"""

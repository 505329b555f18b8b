"""The SQLite task store: list filters and pagination against a brute-force filter."""

from __future__ import annotations

import random

import pytest

from snakemake_fedgen.node.store import TaskStore


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    rng = random.Random(7)
    store = TaskStore(tmp_path_factory.mktemp("store") / "tasks.sqlite")
    docs = []
    for i in range(1500):
        tags = {"run": rng.choice(["r1", "r2", "r3"])}
        if rng.random() < 0.5:
            tags["rule"] = rng.choice(["qc", "gwas", ""])
        doc = {
            "id": f"task-{i}",
            "state": rng.choice(["QUEUED", "COMPLETE", "EXECUTOR_ERROR"]),
            "name": rng.choice(["align", "alignment", "gwas"]) + f"-{i}",
            "tags": tags,
            "executors": [],
        }
        owner = rng.choice(["alice", "bob"])
        store.create(doc, owner=owner)
        docs.append((owner, doc))
    yield store, docs
    store.close()


def _expected(docs, *, owner, tags, state=None, name_prefix=None):
    out = []
    for doc_owner, doc in reversed(docs):
        if doc_owner != owner or (state and doc["state"] != state):
            continue
        if name_prefix and not doc["name"].startswith(name_prefix):
            continue
        if all(k in doc["tags"] and (v == "" or doc["tags"][k] == v) for k, v in tags.items()):
            out.append(doc["id"])
    return out


@pytest.mark.parametrize(
    ("tags", "state", "name_prefix"),
    [
        ({}, None, None),
        ({"run": "r2"}, None, None),
        ({"run": "r1", "rule": "qc"}, "COMPLETE", None),
        ({"rule": ""}, None, "align"),
        ({"rule": "", "run": "r3"}, "QUEUED", "alignment"),
        ({"run": "nope"}, None, None),
    ],
)
def test_list__pages_match_brute_force_filter(filled, tags, state, name_prefix):
    store, docs = filled
    for owner in ("alice", "bob"):
        seen, token = [], None
        while True:
            page, token = store.list(
                owner=owner,
                tags=tags,
                state=state,
                name_prefix=name_prefix,
                page_size=97,
                page_token=token,
            )
            assert len(page) <= 97
            seen.extend(t["id"] for t in page)
            if token is None:
                break
        assert seen == _expected(docs, owner=owner, tags=tags, state=state, name_prefix=name_prefix)

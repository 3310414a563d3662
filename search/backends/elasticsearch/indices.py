"""The Elasticsearch catalogue's indices and registry: creating them (templates, aliases),
migrating them to a newer mapping, rebuilding them beside the current ones (``rebuilding``),
reading documents (get, mget, scans in sort order), and the label-set registry."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from search.backends.elasticsearch.client import EsClient
from search.backends.elasticsearch.mappings import (
    KINDS,
    MAPPING_VERSION,
    alias,
    concrete,
    template_body,
)
from tvindex.core.labels import LabelSet
from tvindex.core.store import StoreError
from tvindex.settings import ElasticsearchSettings

log = logging.getLogger(__name__)
SCAN_PAGE = 1000


class EsIndices:
    """The indices behind ``EsStore``: connection, layout, documents and label sets."""

    cfg: ElasticsearchSettings
    client: EsClient
    es: Any
    _idx: dict[str, str]
    _slots_cache: list[dict[str, Any]]

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        return self.client.call(what, fn, **kwargs)

    def _ensure_indices(self) -> None:
        from elasticsearch import BadRequestError

        info = self._call("connect", self.es.info)
        self.server_version = str(info["version"]["number"])
        prefix = self.cfg.index_prefix
        for kind in KINDS:
            name = alias(prefix, kind)
            if not self._call("check alias", self.es.indices.exists_alias, name=name):
                # Templates are written only when indices are built, so a reader whose key
                # may only read and search the indices never needs template privileges.
                self._put_template(kind)
                try:
                    self._call("create index", self.es.indices.create,
                               index=concrete(prefix, kind), aliases={name: {}})
                except BadRequestError as exc:
                    if "already_exists" not in str(exc):
                        raise StoreError(f"cannot create index {concrete(prefix, kind)}: "
                                         f"{exc}") from exc
                continue
            version = self._mapping_version(name)
            if version > MAPPING_VERSION:
                raise StoreError(f"index {name} has mapping version {version}, newer than this "
                                 f"tvindex ({MAPPING_VERSION}); upgrade tvindex")
            if version < MAPPING_VERSION:
                self._migrate(kind)

    def _put_template(self, kind: str) -> None:
        prefix = self.cfg.index_prefix
        self._call("put index template", self.es.indices.put_index_template,
                   name=alias(prefix, kind),
                   **template_body(prefix, kind, self.cfg.shards, self.cfg.replicas))

    def _mapping_version(self, index: str) -> int:
        resp = self._call("get mapping", self.es.indices.get_mapping, index=index)
        versions = [int((m.get("mappings", {}).get("_meta") or {}).get("mapping_version", 0))
                    for m in resp.values()]
        return min(versions) if versions else 0

    def schema_version(self) -> int:
        return min(self._mapping_version(self._idx[k]) for k in KINDS)

    def _concrete_of(self, name: str) -> list[str]:
        from elasticsearch import NotFoundError

        try:
            return sorted(self._call("get alias", self.es.indices.get_alias, name=name).keys())
        except NotFoundError:
            return []

    def _migrate(self, kind: str) -> None:
        """Copy an index built with an older mapping into a new one, then swap the alias in
        one atomic call (readers see the old index until then) and drop the old index."""
        name = self._idx[kind]
        old = self._concrete_of(name)
        new = concrete(self.cfg.index_prefix, kind, f"{time.time_ns():x}")
        log.warning("migrating %s (%s) to mapping version %d: %s", name, old, MAPPING_VERSION, new)
        self._put_template(kind)
        self._call("create index", self.es.indices.create, index=new)
        resp = self._call("reindex", self.es.reindex, source={"index": name},
                          dest={"index": new}, refresh=True, wait_for_completion=True)
        if resp.get("failures"):
            self._call("delete index", self.es.indices.delete, index=new)
            raise StoreError(f"migrating {name}: {len(resp['failures'])} document(s) failed: "
                             f"{resp['failures'][:3]}")
        actions = [{"remove": {"index": i, "alias": name}} for i in old]
        actions.append({"add": {"index": new, "alias": name}})
        self._call("swap alias", self.es.indices.update_aliases, actions=actions)
        self._call("delete index", self.es.indices.delete, index=",".join(old))

    @contextmanager
    def rebuilding(self) -> Iterator[Any]:
        """Re-index into fresh indices (a model or vocabulary change): inside the block this
        store reads and writes a new set of indices while every other reader keeps the
        current ones; on success all aliases move to the new set in one atomic ``_aliases``
        call and the old indices are deleted; on an exception the new ones are deleted::

            with store.rebuilding():
                run_index(catalogue, store, taggers, settings, force=True)
        """
        prefix = self.cfg.index_prefix
        build = f"{time.time_ns():x}"
        new = {kind: concrete(prefix, kind, build) for kind in KINDS}
        for kind, index in new.items():
            self._put_template(kind)  # the current shards/replicas settings apply
            self._call("create index", self.es.indices.create, index=index)
        saved, saved_slots = self._idx, self._slots_cache
        self._idx, self._slots_cache = new, []
        try:
            yield self
        except BaseException:
            self._idx, self._slots_cache = saved, saved_slots
            self._call("delete index", self.es.indices.delete, index=",".join(new.values()))
            raise
        actions, old = [], []
        for kind in KINDS:
            name = alias(prefix, kind)
            for index in self._concrete_of(name):
                actions.append({"remove": {"index": index, "alias": name}})
                old.append(index)
            actions.append({"add": {"index": new[kind], "alias": name}})
        self._call("swap aliases", self.es.indices.update_aliases, actions=actions)
        self._idx, self._slots_cache = saved, []
        if old:
            self._call("delete index", self.es.indices.delete, index=",".join(old))

    def _get(self, kind: str, doc_id: str, **kwargs: Any) -> dict[str, Any] | None:
        from elasticsearch import NotFoundError

        try:
            return self._call(f"get {kind}", self.es.get, index=self._idx[kind], id=doc_id,
                              **kwargs).body
        except NotFoundError:
            return None

    def _mget(self, kind: str, ids: Sequence[str], source: Any = True) -> dict[str, dict]:
        out: dict[str, dict] = {}
        ids = list(dict.fromkeys(ids))
        for i in range(0, len(ids), SCAN_PAGE):
            resp = self._call(f"mget {kind}", self.es.mget, index=self._idx[kind],
                              ids=ids[i:i + SCAN_PAGE], source=source)
            for d in resp["docs"]:
                if d.get("found"):
                    out[d["_id"]] = d["_source"]
        return out

    def _scan(self, kind: str, query: dict[str, Any], sort: list[Any],
              source: Any = True) -> Iterator[dict[str, Any]]:
        """Every matching document, in ``sort`` order (which must be unique), by pages."""
        after = None
        while True:
            kwargs: dict[str, Any] = {"index": self._idx[kind], "query": query, "sort": sort,
                                      "size": SCAN_PAGE, "source": source,
                                      "track_total_hits": False}
            if after is not None:
                kwargs["search_after"] = after
            hits = self._call(f"search {kind}", self.es.search, **kwargs)["hits"]["hits"]
            yield from hits
            if len(hits) < SCAN_PAGE:
                return
            after = hits[-1]["sort"]

    def _delete_by_query(self, kind: str, query: dict[str, Any], what: str) -> None:
        resp = self._call(what, self.es.delete_by_query, index=self._idx[kind], query=query,
                          refresh=True, conflicts="proceed")
        if resp.get("failures"):
            raise StoreError(f"{what}: {len(resp['failures'])} document(s) could not be "
                             f"deleted: {resp['failures'][:3]}")

    def _next_seq(self, kind: str) -> int:
        resp = self._call(f"max seq of {kind}", self.es.search, index=self._idx[kind], size=0,
                          aggs={"m": {"max": {"field": "seq"}}})
        value = resp["aggregations"]["m"]["value"]
        return int(value) + 1 if value is not None else 1

    # --- label sets ----------------------------------------------------------------------
    def _slots(self, reload: bool = False) -> list[dict[str, Any]]:
        """The label-set registry: slot k holds the k-th registered set. Slots are created
        with op_type=create, so concurrent registrations never share one; a set's labels get
        the global ids first_id .. first_id + size - 1, as in the SQLite backend."""
        if self._slots_cache and not reload:
            return self._slots_cache
        slots: list[dict[str, Any]] = []
        while True:
            ids = [f"labelset-{k}" for k in range(len(slots), len(slots) + 16)]
            found = self._mget("meta", ids)
            for doc_id in ids:
                if doc_id not in found:
                    self._slots_cache = slots
                    return slots
                slots.append(found[doc_id])

    def _first_ids(self, needed: Iterable[str] = ()) -> dict[str, int]:
        """label set name -> id of its label 0; re-read when a ``needed`` set is unknown
        (another process may have registered it)."""
        first = {s["name"]: int(s["first_id"]) for s in self._slots()}
        if set(needed) - set(first):
            first = {s["name"]: int(s["first_id"]) for s in self._slots(reload=True)}
        return first

    def register_label_sets(self, label_sets: Sequence[LabelSet]) -> None:
        from elasticsearch import ConflictError

        for ls in label_sets:
            while True:
                slots = self._slots(reload=True)
                same = [s for s in slots if s["name"] == ls.name]
                if same:
                    if same[0]["fingerprint"] != ls.fingerprint():
                        raise StoreError(
                            f"label set {ls.name!r} in {self.cfg.index_prefix}* has different "
                            "labels from the tagger's; rebuild the indices (EsStore.rebuilding) "
                            "or use another elasticsearch.index_prefix")
                    break
                k = len(slots)
                first = 1 + sum(int(s["size"]) for s in slots)
                doc = {"kind": "labelset", "slot": k, "name": ls.name,
                       "activation": ls.activation, "fingerprint": ls.fingerprint(),
                       "first_id": first, "size": len(ls), "labels": list(ls.labels)}
                try:
                    self._call("register label set", self.es.create, index=self._idx["meta"],
                               id=f"labelset-{k}", document=doc, refresh=True)
                    break
                except ConflictError:
                    continue  # another process took slot k: re-read and try again
        self._slots(reload=True)

    def label_sets(self) -> list[LabelSet]:
        return [LabelSet(s["name"], s["activation"], tuple(s["labels"]))
                for s in self._slots(reload=True)]


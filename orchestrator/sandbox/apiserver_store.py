"""The sandbox API server's object store: thread-safe, versioned, with the real server's write semantics.

Objects are plain dicts kept under ``(group, plural) -> (namespace, name)``; cluster-scoped objects use the
namespace ``""``. The version is deliberately not part of the key: like a real API server, one object is visible
through every version of its group (an HTTPRoute written as ``v1beta1`` reads back as ``v1``), and ``apiVersion``
is set to the version asked for on the way out. Callers always get deep copies.

Every write takes the next value of one global counter as the object's ``resourceVersion`` and appends a watch
event to a bounded log, which ``watch`` replays and then follows.

What the store enforces, as the real server does:
* names (``generateName`` too), namespace existence (404), AlreadyExists (409);
* optimistic concurrency: a write carrying a stale ``metadata.resourceVersion`` is a 409 Conflict;
* ``generation`` starts at 1 and moves when ``spec`` changes; uid/creationTimestamp/name cannot change;
* the main endpoint of a kind with a ``status`` subresource ignores status, the subresource changes only status;
* deleting an object deletes its dependents (``ownerReferences``) unless the propagation policy is Orphan, and
  deleting a namespace deletes everything in it.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import re
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from orchestrator.sandbox import apiserver_capacity as capacity
from orchestrator.sandbox import apiserver_patch as patching
from orchestrator.sandbox.apiserver_resources import (
    BUILTINS,
    STATUS_SUBRESOURCE,
    ApiError,
    ResourceInfo,
    custom_info,
    not_found,
)
from orchestrator.sandbox.apiserver_selectors import (
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    selector_matches,
    selector_string,
)

Obj = dict[str, Any]
# Spelled as an alias because ``Store.list`` shadows the builtin inside the class body.
Objs = list[Obj]
CRD_GR = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_GR = ("", "namespaces")

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SCALABLE = {("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets")}


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _qualified(info: ResourceInfo) -> str:
    return f"{info.plural}.{info.group}" if info.group else info.plural


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    group: str
    plural: str
    namespace: str
    obj: Obj


class Store:
    """Every object of the sandbox cluster. Safe to call from any thread."""

    def __init__(self, event_log_size: int = 10_000) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._events: deque[WatchEvent] = deque(maxlen=event_log_size)
        # Watches that start before this resourceVersion missed events that fell out of the log: 410 Gone.
        self._log_start = 0
        self._closed = False

    # ----------------------------------------------------------------------------------------------- resolving

    def resolve(self, group: str, version: str, plural: str) -> ResourceInfo:
        """Kind and scope of a resource: built-in, declared by a CRD, or an undeclared custom resource."""
        builtin = BUILTINS.get((group, plural))
        if builtin is not None:
            return builtin.with_version(version)
        with self._lock:
            crd = self._objects.get(CRD_GR, {}).get(("", f"{plural}.{group}"))
            if crd is not None:
                spec = crd.get("spec") or {}
                names = spec.get("names") or {}
                return custom_info(group, version, plural, names.get("kind"), spec.get("scope") != "Cluster")
            # Undeclared: keep the kind the first object of this resource was written with.
            for obj in self._objects.get((group, plural), {}).values():
                return custom_info(group, version, plural, obj.get("kind"), True)
        return custom_info(group, version, plural, None, True)

    def known_resources(self) -> list[ResourceInfo]:
        """Built-ins, CRD-declared resources and undeclared resources that hold objects (for discovery)."""
        infos = {(i.group, i.plural, i.version): i for i in BUILTINS.values()}
        with self._lock:
            for crd in self._objects.get(CRD_GR, {}).values():
                spec = crd.get("spec") or {}
                names = spec.get("names") or {}
                for v in spec.get("versions") or []:
                    info = custom_info(
                        spec.get("group", ""), v["name"], names.get("plural", ""), names.get("kind"),
                        spec.get("scope") != "Cluster",
                    )
                    infos[(info.group, info.plural, info.version)] = info
            for (group, plural), objs in self._objects.items():
                if (group, plural) in BUILTINS:
                    continue
                for obj in objs.values():
                    # An undeclared resource is discoverable in the version its objects were written with.
                    version = str(obj.get("apiVersion", "v1")).split("/")[-1]
                    infos.setdefault((group, plural, version), self.resolve(group, version, plural))
                    break
        return list(infos.values())

    def transaction(self) -> threading.RLock:
        """The store's lock, for a caller that must check and write atomically (an eviction against a PDB)."""
        return self._lock

    def has_status_subresource(self, info: ResourceInfo) -> bool:
        if info.builtin:
            return info.group_resource in STATUS_SUBRESOURCE
        with self._lock:
            crd = self._objects.get(CRD_GR, {}).get(("", f"{info.plural}.{info.group}"))
        if crd is None:
            return False
        for v in (crd.get("spec") or {}).get("versions") or []:
            if v.get("name") == info.version:
                return "status" in (v.get("subresources") or {})
        return False

    # ------------------------------------------------------------------------------------------------- reading

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def _key(self, info: ResourceInfo, namespace: str | None, name: str) -> tuple[str, str]:
        return ((namespace or "") if info.namespaced else "", name)

    def _out(self, info: ResourceInfo, obj: Obj) -> Obj:
        result = copy.deepcopy(obj)
        result["apiVersion"] = info.api_version
        result.setdefault("kind", info.kind)
        return result

    def _find(self, info: ResourceInfo, namespace: str | None, name: str) -> Obj:
        obj = self._objects.get(info.group_resource, {}).get(self._key(info, namespace, name))
        if obj is None:
            raise not_found(info, name)
        return obj

    def get(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> Obj:
        info = self.resolve(group, version, plural)
        with self._lock:
            return self._out(info, self._find(info, namespace, name))

    def list(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Objs:
        """Objects of one resource, in one namespace or (``None``) all, sorted by namespace and name."""
        info = self.resolve(group, version, plural)
        match = self.matcher(label_selector, field_selector)
        with self._lock:
            objs = self._objects.get(info.group_resource, {})
            keys = sorted(k for k in objs if not (info.namespaced and namespace and k[0] != namespace))
            return [self._out(info, objs[k]) for k in keys if match(objs[k])]

    @staticmethod
    def matcher(label_selector: str | None, field_selector: str | None) -> Callable[[Obj], bool]:
        labels = parse_label_selector(label_selector) if label_selector else []
        fields = parse_field_selector(field_selector) if field_selector else []

        def match(obj: Obj) -> bool:
            return labels_match((obj.get("metadata") or {}).get("labels"), labels) and fields_match(obj, fields)

        return match

    def all_objects(self) -> Iterator[tuple[str, str, Obj]]:
        """(group, plural, object) for everything, as copies; for dumps and debugging."""
        with self._lock:
            snapshot = [(g, p, copy.deepcopy(o)) for (g, p), objs in self._objects.items() for o in objs.values()]
        yield from snapshot

    # ------------------------------------------------------------------------------------------------- writing

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _record(self, kind: str, info: ResourceInfo, obj: Obj) -> None:
        if len(self._events) == self._events.maxlen:
            self._log_start = self._events[0].rv
        self._events.append(
            WatchEvent(
                self._rv, kind, info.group, info.plural, (obj.get("metadata") or {}).get("namespace", ""),
                copy.deepcopy(obj),
            )
        )
        self._changed.notify_all()

    def create(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        body: Obj,
        *,
        dry_run: bool = False,
    ) -> Obj:
        info = self.resolve(group, version, plural)
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object")
        if info.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise ApiError(
                    400, "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or body_ns or "default"
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
            namespace = None
        with self._lock:
            if info.namespaced and ("", str(namespace)) not in self._objects.get(NAMESPACE_GR, {}):
                raise ApiError(
                    404, f'namespaces "{namespace}" not found',
                    details={"name": namespace, "kind": "namespaces"},
                )
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError(422, f"{info.kind}: metadata.name: Required value: name or generateName is required")
                for _ in range(100):
                    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
                    candidate = f"{meta['generateName']}{suffix}"
                    if self._key(info, namespace, candidate) not in self._objects.get(info.group_resource, {}):
                        meta["name"] = candidate
                        break
            name = str(meta["name"])
            self._validate(info, obj)
            if info.group_resource == ("", "pods"):
                self._admit_pod(str(namespace), obj)
            if self._key(info, namespace, name) in self._objects.get(info.group_resource, {}):
                raise ApiError(
                    409, f'{_qualified(info)} "{name}" already exists', reason="AlreadyExists",
                    details={"name": name, "group": info.group, "kind": info.plural},
                )
            obj["apiVersion"] = info.api_version
            obj["kind"] = obj.get("kind") or info.kind
            for transient in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"):
                meta.pop(transient, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            meta["generation"] = 1
            self._defaults(info, obj)
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return self._out(info, obj)
            meta["resourceVersion"] = self._bump()
            self._objects.setdefault(info.group_resource, {})[self._key(info, namespace, name)] = obj
            self._record("ADDED", info, obj)
            return self._out(info, obj)

    def _admit_pod(self, namespace: str, pod: Obj) -> None:
        """The ResourceQuota admission plugin (see ``apiserver_capacity``): 403 when the pod does not fit."""
        quotas = [o for (ns, _), o in self._objects.get(("", "resourcequotas"), {}).items() if ns == namespace]
        if quotas:
            pods = [o for (ns, _), o in self._objects.get(("", "pods"), {}).items() if ns == namespace]
            capacity.admit_pod(pod, quotas, pods)

    def _validate(self, info: ResourceInfo, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        if not isinstance(name, str) or len(name) > 253 or not _NAME.match(name):
            raise ApiError(
                422, f'{info.kind} "{name}" is invalid: metadata.name: Invalid value: a lowercase RFC 1123 '
                "subdomain must consist of lower case alphanumeric characters, '-' or '.'",
            )
        labels = obj["metadata"].get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ApiError(422, f'{info.kind} "{name}" is invalid: metadata.labels: values must be strings')
        spec = obj.get("spec") or {}
        if info.group_resource in _SCALABLE:
            selector = spec.get("selector")
            template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not selector:
                raise ApiError(422, f'{info.kind}.{info.group} "{name}" is invalid: spec.selector: Required value')
            if not selector_matches(selector, template_labels):
                raise ApiError(
                    422, f'{info.kind}.{info.group} "{name}" is invalid: spec.template.metadata.labels: '
                    "Invalid value: `selector` does not match template `labels`",
                )
            replicas = spec.get("replicas", 1)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise ApiError(422, f'{info.kind}.{info.group} "{name}" is invalid: spec.replicas: Invalid value')
        if info.group_resource == ("", "pods") and not spec.get("containers"):
            raise ApiError(422, f'Pod "{name}" is invalid: spec.containers: Required value')

    def _defaults(self, info: ResourceInfo, obj: Obj) -> None:
        """Fields the real server fills in on create and the client's models expect."""
        gr = info.group_resource
        meta = obj["metadata"]
        if gr == NAMESPACE_GR:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        elif gr in _SCALABLE:
            obj["spec"].setdefault("replicas", 1)
            if gr == ("apps", "deployments"):
                obj["spec"].setdefault(
                    "strategy",
                    {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                )
            status = obj.setdefault("status", {})
            if gr != ("apps", "deployments"):
                # ReplicaSetStatus and StatefulSetStatus require ``replicas``; their controllers start it at 0.
                status.setdefault("replicas", 0)
        elif gr == ("", "pods"):
            obj["status"] = {"phase": "Pending"}
        elif gr == ("", "services"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec["type"] != "ExternalName":
                spec.setdefault("clusterIP", f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}")
        elif gr == CRD_GR:
            spec = obj.get("spec") or {}
            obj["status"] = {
                "acceptedNames": spec.get("names") or {},
                "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
                "conditions": [
                    {"type": t, "status": "True", "reason": r, "message": "", "lastTransitionTime": now()}
                    for t, r in (("NamesAccepted", "NoConflicts"), ("Established", "InitialNamesAccepted"))
                ],
            }

    def _check_rv(self, info: ResourceInfo, current: Obj, wanted: Any) -> None:
        if wanted not in (None, "") and str(wanted) != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {_qualified(info)} "{current["metadata"]["name"]}": the object '
                "has been modified; please apply your changes to the latest version and try again",
                details={"name": current["metadata"]["name"], "group": info.group, "kind": info.plural},
            )

    def _commit(self, info: ResourceInfo, current: Obj, new: Obj, subresource: str | None, dry_run: bool) -> Obj:
        """Store ``new`` in place of ``current``: keep immutable fields, honour the status split, bump versions."""
        if not isinstance(new, dict) or not isinstance(new.get("metadata", {}), dict):
            raise ApiError(400, "the request body must be a JSON object with object metadata")
        cur_meta = current["metadata"]
        meta = new.setdefault("metadata", {})
        if meta.get("name", cur_meta["name"]) != cur_meta["name"]:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        if subresource == "status":
            result = copy.deepcopy(current)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            if self.has_status_subresource(info):
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
                else:
                    result.pop("status", None)
            for immutable in ("name", "namespace", "uid", "creationTimestamp", "generation"):
                if immutable in cur_meta:
                    meta[immutable] = cur_meta[immutable]
                else:
                    meta.pop(immutable, None)
            result["kind"] = current.get("kind") or info.kind
            self._validate(info, result)
            if self._spec_of(result) != self._spec_of(current):
                meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        result["apiVersion"] = info.api_version
        if result == current:
            # Like the real server, a no-op write keeps the resourceVersion and sends no watch event.
            return self._out(info, current)
        if dry_run:
            return self._out(info, result)
        result["metadata"]["resourceVersion"] = self._bump()
        self._objects[info.group_resource][self._key(info, cur_meta.get("namespace"), cur_meta["name"])] = result
        self._record("MODIFIED", info, result)
        return self._out(info, result)

    @staticmethod
    def _spec_of(obj: Obj) -> Any:
        if "spec" in obj:
            return obj["spec"]
        return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}

    def replace(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        body: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        info = self.resolve(group, version, plural)
        with self._lock:
            current = self._find(info, namespace, name)
            if subresource == "scale":
                return self._write_scale(info, current, body, dry_run)
            self._check_rv(info, current, (body.get("metadata") or {}).get("resourceVersion"))
            return self._commit(info, current, copy.deepcopy(body), subresource, dry_run)

    def patch(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        body: Any,
        content_type: str = patching.MERGE,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        info = self.resolve(group, version, plural)
        with self._lock:
            try:
                current = self._find(info, namespace, name)
            except ApiError:
                if content_type.startswith(patching.APPLY) and isinstance(body, dict):
                    # Server-side apply creates what does not exist yet.
                    created = copy.deepcopy(body)
                    created.setdefault("metadata", {})["name"] = name
                    return self.create(group, version, plural, namespace, created, dry_run=dry_run)
                raise
            if subresource == "scale":
                view = self._scale_of(info, current)
                patched = patching.apply_patch(view, body, content_type)
                return self._write_scale(info, current, patched, dry_run)
            view = self._out(info, current)
            patched = patching.apply_patch(view, body, content_type)
            if isinstance(patched, dict):
                self._check_rv(info, current, (patched.get("metadata") or {}).get("resourceVersion"))
            return self._commit(info, current, patched, subresource, dry_run)

    def mutate(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], None],
        *,
        subresource: str | None = None,
    ) -> Obj:
        """Atomic read-modify-write for in-process components (the controller): ``change`` edits a copy."""
        info = self.resolve(group, version, plural)
        with self._lock:
            current = self._find(info, namespace, name)
            new = self._out(info, current)
            change(new)
            return self._commit(info, current, new, subresource, dry_run=False)

    # -------------------------------------------------------------------------------------------------- scale

    def _scale_of(self, info: ResourceInfo, obj: Obj) -> Obj:
        if info.group_resource not in _SCALABLE:
            raise ApiError(404, f"the server could not find the requested resource ({info.plural}/scale)")
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
            },
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": selector_string(spec.get("selector")),
            },
        }

    def get_scale(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> Obj:
        info = self.resolve(group, version, plural)
        with self._lock:
            return self._scale_of(info, self._find(info, namespace, name))

    def _write_scale(self, info: ResourceInfo, current: Obj, scale: Any, dry_run: bool) -> Obj:
        self._scale_of(info, current)  # 404 for kinds without a scale subresource
        if not isinstance(scale, dict):
            raise ApiError(400, "the request body must be a Scale object")
        self._check_rv(info, current, (scale.get("metadata") or {}).get("resourceVersion"))
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, f'Scale "{current["metadata"]["name"]}" is invalid: spec.replicas: Invalid value')
        new = copy.deepcopy(current)
        new.setdefault("spec", {})["replicas"] = replicas
        stored = self._commit(info, current, new, None, dry_run)
        return self._scale_of(info, stored)

    # ------------------------------------------------------------------------------------------------ deleting

    def delete(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        info = self.resolve(group, version, plural)
        with self._lock:
            current = self._find(info, namespace, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
                raise ApiError(409, f'Precondition failed: UID in precondition: {pre["uid"]}')
            self._check_rv(info, current, pre.get("resourceVersion"))
            if dry_run:
                return self._out(info, current)
            return self._delete_locked(info, current, propagation or "Background")

    def _delete_locked(self, info: ResourceInfo, obj: Obj, propagation: str) -> Obj:
        meta = obj["metadata"]
        del self._objects[info.group_resource][self._key(info, meta.get("namespace"), meta["name"])]
        gone = copy.deepcopy(obj)
        gone["metadata"]["deletionTimestamp"] = now()
        gone["metadata"]["resourceVersion"] = self._bump()
        self._record("DELETED", info, gone)
        if info.group_resource == NAMESPACE_GR:
            for (group, plural), objs in list(self._objects.items()):
                child_info = self.resolve(group, "v1", plural)
                for child in [o for o in objs.values() if o["metadata"].get("namespace") == meta["name"]]:
                    if self._still_stored(child_info, child):
                        self._delete_locked(child_info, child, propagation)
        if info.group_resource == CRD_GR:
            # Like the real server, removing a CRD removes every object of the resource it declared.
            spec = obj.get("spec") or {}
            declared = (str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", "")))
            for child in list(self._objects.get(declared, {}).values()):
                self._delete_locked(self.resolve(declared[0], "v1", declared[1]), child, propagation)
        self._cascade(meta["uid"], propagation)
        return self._out(info, gone)

    def _still_stored(self, info: ResourceInfo, obj: Obj) -> bool:
        key = self._key(info, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        return self._objects.get(info.group_resource, {}).get(key) is obj

    def _cascade(self, owner_uid: str, propagation: str) -> None:
        for (group, plural), objs in list(self._objects.items()):
            for obj in list(objs.values()):
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == owner_uid for r in refs):
                    continue
                info = self.resolve(group, str(obj.get("apiVersion", "v1")).split("/")[-1], plural)
                if propagation == "Orphan":
                    orphan = copy.deepcopy(obj)
                    orphan["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                    self._commit(info, obj, orphan, None, dry_run=False)
                elif self._still_stored(info, obj):
                    self._delete_locked(info, obj, propagation)

    def delete_collection(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        propagation: str | None = None,
        dry_run: bool = False,
    ) -> Objs:
        info = self.resolve(group, version, plural)
        match = self.matcher(label_selector, field_selector)
        with self._lock:
            objs = self._objects.get(info.group_resource, {})
            doomed = [
                o for k, o in sorted(objs.items())
                if not (info.namespaced and namespace and k[0] != namespace) and match(o)
            ]
            if dry_run:
                return [self._out(info, o) for o in doomed]
            return [
                self._delete_locked(info, o, propagation or "Background")
                for o in doomed
                if self._still_stored(info, o)
            ]

    # -------------------------------------------------------------------------------------------------- watch

    def watch(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        since: str | None,
        match: Callable[[Obj], bool],
        timeout: float,
    ) -> Iterator[tuple[str, Obj]]:
        """Events of one resource: replayed from ``since`` (or the current objects as ADDED), then followed.

        Ends after ``timeout`` seconds or when the store is closed; an ``ERROR`` event with a 410 Status when
        ``since`` is older than the event log remembers.
        """
        info = self.resolve(group, version, plural)
        deadline = time.monotonic() + timeout
        if since in (None, "", "0"):
            with self._lock:
                position = self._rv
                initial = self.list(group, version, plural, namespace)
            for obj in initial:
                if match(obj):
                    yield "ADDED", obj
        else:
            try:
                position = int(str(since))
            except ValueError:
                raise ApiError(400, f"invalid resourceVersion {since!r}") from None
            with self._lock:
                if position < self._log_start:
                    yield "ERROR", ApiError(
                        410, f"too old resource version: {position} ({self._log_start})", reason="Expired"
                    ).status()
                    return
        while not self._closed:
            with self._lock:
                pending = [
                    e for e in self._events
                    if e.rv > position and (e.group, e.plural) == info.group_resource
                    and not (info.namespaced and namespace and e.namespace != namespace)
                ]
                if not pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._changed.wait(min(remaining, 1.0))
                    continue
                position = pending[-1].rv
            for event in pending:
                if match(event.obj):
                    yield event.type, self._out(info, event.obj)

    def close(self) -> None:
        """End every running watch."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()

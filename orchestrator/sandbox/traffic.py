"""Steady load for every sandbox app, split the way a mesh or gateway would split it.

Shape:

* ``ClusterSnapshot.read`` lists Deployments, Services, Pods, HTTPRoutes, VirtualServices
  and DestinationRules through the official ``kubernetes`` client (as plain JSON);
* ``routing_table`` (pure) turns a snapshot into one ``AppRoute`` per app: a list of
  weighted backends, each a list of ready pod endpoints;
* ``TrafficGenerator`` refreshes the table every ``refresh_interval`` seconds in one
  thread and, in another, paces ``rate`` requests per second per app into a bounded
  thread pool, counting sent/failed per app and track.

An app is a value of the label ``app`` on a Deployment or a Service, per namespace. Its
routing, in order of precedence:

1. an HTTPRoute (gateway.networking.k8s.io/v1) whose backendRefs name one of the app's
   Services: requests are split by backendRef weight (default 1), then spread uniformly
   over the ready pods the chosen Service selects;
2. an Istio VirtualService (networking.istio.io) whose route destinations name one of
   the app's Services: split by destination weight (a lone destination gets 100); a
   ``subset`` adds the labels a DestinationRule gives it;
3. otherwise uniformly over the ready pods the app's main Service selects (the one named
   like the app, else the one with the fewest selector labels), or, with no Service,
   the pods labelled ``app=<app>``: the replica ratio decides.

A pod is ready when its Ready condition is True, it is not being deleted and it carries
the runtime's port annotation.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s

from orchestrator.sandbox.runtime import PORT_ANNOTATION

JSON = dict[str, Any]
# Put on the generator's own API reads (see ``TrafficGenerator``) so the API server can tell its
# steady polling apart from the requests of the code under test (e.g. to keep them out of its audit log).
INTERNAL_HEADER = "X-Sandbox-Internal"
MAX_RATE = 200.0
# The "track" under which requests are counted that a route sent to a backend with no ready pod.
NO_ENDPOINT_TRACK = "none"
MAX_IN_FLIGHT_PER_APP = 16
# Simulated users the generator draws a targeting key from (flag splits bucket by it).
USERS = 10_000


@dataclass(frozen=True)
class Endpoint:
    namespace: str
    pod: str
    track: str
    port: int


@dataclass(frozen=True)
class Backend:
    """One weighted destination: the ready pods behind one Service (or the app's pods)."""

    name: str
    weight: float
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class AppRoute:
    namespace: str
    app: str
    router: str  # "httproute/<name>", "virtualservice/<name>", "service/<name>" or "pods"
    backends: tuple[Backend, ...]

    @property
    def routed(self) -> bool:
        """Whether a gateway or mesh route (rather than a plain Service) decides the split."""
        return self.router.startswith(("httproute/", "virtualservice/"))

    def pick(self, rng: random.Random) -> Endpoint | None:
        """A weighted choice of backend, then a uniform choice of pod; None when nothing can serve."""
        live = [b for b in self.backends if b.weight > 0]
        total = sum(b.weight for b in live)
        if total <= 0:
            return None
        x = rng.uniform(0, total)
        chosen = live[-1]
        for b in live:
            if x < b.weight:
                chosen = b
                break
            x -= b.weight
        if not chosen.endpoints:
            return None
        return rng.choice(chosen.endpoints)

    def sends(self) -> bool:
        """Whether load goes out at all. A plain Service with no ready pod gets none (there is nothing
        to send to yet); a route that weights a backend with no pods does, and those requests fail,
        as a gateway would answer 503."""
        if self.routed:
            return any(b.weight > 0 for b in self.backends)
        return any(b.endpoints for b in self.backends)


@dataclass
class ClusterSnapshot:
    deployments: list[JSON] = field(default_factory=list)
    services: list[JSON] = field(default_factory=list)
    pods: list[JSON] = field(default_factory=list)
    httproutes: list[JSON] = field(default_factory=list)
    virtualservices: list[JSON] = field(default_factory=list)
    destinationrules: list[JSON] = field(default_factory=list)

    @classmethod
    def read(cls, api: k8s.ApiClient) -> ClusterSnapshot:
        core = k8s.CoreV1Api(api)
        apps = k8s.AppsV1Api(api)
        custom = k8s.CustomObjectsApi(api)

        def items(call: Callable[..., Any], *args: str) -> list[JSON]:
            # Raw JSON (no model deserialisation): cheaper, and custom resources come back the same way.
            resp = call(*args, _preload_content=False, _request_timeout=5)
            body = json.loads(resp.data)
            return list(body.get("items") or [])

        def optional(group: str, version: str, plural: str) -> list[JSON]:
            # A cluster without the Gateway API or Istio simply has no such routes.
            try:
                return items(custom.list_cluster_custom_object, group, version, plural)
            except k8s.ApiException as e:
                if e.status in (404, 405):
                    return []
                raise

        def istio(plural: str) -> list[JSON]:
            # Istio serves both versions; an object written through either is the same object.
            merged: dict[tuple[str, str], JSON] = {}
            for version in ("v1beta1", "v1"):
                for obj in optional("networking.istio.io", version, plural):
                    merged.setdefault((_ns(obj), _name(obj)), obj)
            return list(merged.values())

        return cls(
            deployments=items(apps.list_deployment_for_all_namespaces),
            services=items(core.list_service_for_all_namespaces),
            pods=items(core.list_pod_for_all_namespaces),
            httproutes=optional("gateway.networking.k8s.io", "v1", "httproutes"),
            virtualservices=istio("virtualservices"),
            destinationrules=istio("destinationrules"),
        )


def _meta(obj: JSON) -> JSON:
    meta: JSON = obj.get("metadata") or {}
    return meta


def _ns(obj: JSON) -> str:
    return str(_meta(obj).get("namespace") or "default")


def _name(obj: JSON) -> str:
    return str(_meta(obj).get("name") or "")


def _labels(obj: JSON) -> dict[str, str]:
    labels: dict[str, str] = _meta(obj).get("labels") or {}
    return labels


def pod_ready(pod: JSON) -> bool:
    if _meta(pod).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") not in (None, "Running"):
        return False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status")) == "True"
    return False


def pod_endpoint(pod: JSON) -> Endpoint | None:
    """The pod's address if it is ready and the runtime recorded its port."""
    if not pod_ready(pod):
        return None
    port = (_meta(pod).get("annotations") or {}).get(PORT_ANNOTATION)
    try:
        port_number = int(port) if port is not None else 0
    except ValueError:
        return None
    if port_number <= 0:
        return None
    return Endpoint(_ns(pod), _name(pod), _labels(pod).get("track") or "stable", port_number)


def ready_endpoints(snapshot: ClusterSnapshot) -> list[Endpoint]:
    return [ep for ep in (pod_endpoint(p) for p in snapshot.pods) if ep is not None]


def running_endpoints(snapshot: ClusterSnapshot) -> list[Endpoint]:
    """Every pod with a process, ready or not: what Prometheus should scrape.

    Scraping starts at process start rather than at readiness because Prometheus batches
    service-discovery updates (every 5 s): registering a new canary pod early means its
    first requests are already being scraped when traffic reaches it.
    """
    out: list[Endpoint] = []
    for pod in snapshot.pods:
        meta = _meta(pod)
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") != "Running":
            continue
        port = str((meta.get("annotations") or {}).get(PORT_ANNOTATION) or "")
        if port.isdigit():
            out.append(Endpoint(_ns(pod), _name(pod), _labels(pod).get("track") or "stable", int(port)))
    return out


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _service_app(svc: JSON) -> str | None:
    selector = (svc.get("spec") or {}).get("selector") or {}
    return _labels(svc).get("app") or selector.get("app")


def _host_name(host: str) -> str:
    # "app-canary.ns.svc.cluster.local" and "app-canary" both mean the Service app-canary.
    return host.split(".", 1)[0]


def _matching_route(
    routes: list[JSON], names: set[str], backends_of: Callable[[JSON], list[tuple[str, float, JSON]]]
) -> tuple[JSON, list[tuple[str, float, JSON]]] | None:
    for route in sorted(routes, key=_name):
        refs = backends_of(route)
        if any(name in names for name, _, _ in refs):
            return route, refs
    return None


def _httproute_backends(route: JSON) -> list[tuple[str, float, JSON]]:
    for rule in (route.get("spec") or {}).get("rules") or []:
        refs = rule.get("backendRefs") or []
        services = [r for r in refs if (r.get("kind") or "Service") == "Service" and r.get("name")]
        if services:
            # Gateway API: an omitted weight means 1.
            return [(str(r["name"]), float(r.get("weight", 1)), r) for r in services]
    return []


def _virtualservice_backends(vs: JSON) -> list[tuple[str, float, JSON]]:
    for http in (vs.get("spec") or {}).get("http") or []:
        routes = http.get("route") or []
        dests = [r for r in routes if (r.get("destination") or {}).get("host")]
        if dests:
            out: list[tuple[str, float, JSON]] = []
            for r in dests:
                dest = r["destination"]
                # Istio: a single destination takes all traffic; with several, a missing weight is 0.
                weight = float(r.get("weight", 100 if len(dests) == 1 else 0))
                out.append((_host_name(str(dest["host"])), weight, dest))
            return out
    return []


def _subset_labels(rules: list[JSON], namespace: str, host: str, subset: str | None) -> dict[str, str]:
    if not subset:
        return {}
    for dr in rules:
        if _ns(dr) != namespace or _host_name(str((dr.get("spec") or {}).get("host") or "")) != host:
            continue
        for s in (dr.get("spec") or {}).get("subsets") or []:
            if s.get("name") == subset:
                labels: dict[str, str] = s.get("labels") or {}
                return labels
    return {}


def routing_table(snapshot: ClusterSnapshot) -> list[AppRoute]:
    """One route per app, by the precedence described in the module docstring."""
    endpoints_by_ns: dict[str, list[tuple[Endpoint, dict[str, str]]]] = defaultdict(list)
    for pod in snapshot.pods:
        ep = pod_endpoint(pod)
        if ep is not None:
            endpoints_by_ns[ep.namespace].append((ep, _labels(pod)))

    apps: set[tuple[str, str]] = set()
    for d in snapshot.deployments:
        app = _labels(d).get("app") or (((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
            "labels", {}
        ).get("app")
        if app:
            apps.add((_ns(d), str(app)))
    services_by_app: dict[tuple[str, str], list[JSON]] = defaultdict(list)
    for svc in snapshot.services:
        app = _service_app(svc)
        if app:
            apps.add((_ns(svc), app))
            services_by_app[(_ns(svc), app)].append(svc)
    services_by_name = {(_ns(s), _name(s)): s for s in snapshot.services}

    def selected(namespace: str, selector: dict[str, str]) -> tuple[Endpoint, ...]:
        return tuple(ep for ep, labels in endpoints_by_ns[namespace] if _selects(selector, labels))

    def service_selector(namespace: str, name: str) -> dict[str, str]:
        svc = services_by_name.get((namespace, name))
        selector: dict[str, str] = ((svc or {}).get("spec") or {}).get("selector") or {}
        return selector

    table: list[AppRoute] = []
    for namespace, app in sorted(apps):
        services = services_by_app.get((namespace, app), [])
        names = {_name(s) for s in services}
        routes_here = [r for r in snapshot.httproutes if _ns(r) == namespace]
        vss_here = [v for v in snapshot.virtualservices if _ns(v) == namespace]

        found = _matching_route(routes_here, names, _httproute_backends)
        if found is not None:
            route, refs = found
            backends = tuple(
                Backend(name, weight, selected(namespace, service_selector(namespace, name)))
                for name, weight, _ in refs
            )
            table.append(AppRoute(namespace, app, f"httproute/{_name(route)}", backends))
            continue

        found = _matching_route(vss_here, names, _virtualservice_backends)
        if found is not None:
            vs, refs = found
            vs_backends: list[Backend] = []
            for name, weight, dest in refs:
                selector = dict(service_selector(namespace, name))
                subset = dest.get("subset")
                selector.update(_subset_labels(snapshot.destinationrules, namespace, name, subset))
                label = f"{name}/{subset}" if subset else name
                vs_backends.append(Backend(label, weight, selected(namespace, selector)))
            table.append(AppRoute(namespace, app, f"virtualservice/{_name(vs)}", tuple(vs_backends)))
            continue

        if services:
            main = sorted(
                services,
                key=lambda s: (_name(s) != app, len((s.get("spec") or {}).get("selector") or {}), _name(s)),
            )[0]
            selector = service_selector(namespace, _name(main))
            table.append(
                AppRoute(
                    namespace,
                    app,
                    f"service/{_name(main)}",
                    (Backend(_name(main), 1.0, selected(namespace, selector)),),
                )
            )
        else:
            table.append(AppRoute(namespace, app, "pods", (Backend(app, 1.0, selected(namespace, {"app": app})),)))
    return table


@dataclass
class TrackCounts:
    sent: int = 0
    failed: int = 0  # a 5xx answer, no answer, or no ready pod to send to


class TrafficGenerator:
    """Sends ``rate`` requests/s to every app, by the current routing; ``start``/``stop``."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        rate: float = 20.0,
        refresh_interval: float = 0.5,
        request_timeout: float = 2.0,
        seed: int | None = None,
    ) -> None:
        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"rate must be in (0, {MAX_RATE:g}] requests per second, got {rate:g}")
        self.api_client = api_client
        api_client.set_default_header(INTERNAL_HEADER, "traffic")
        self.rate = rate
        self.refresh_interval = refresh_interval
        self.request_timeout = request_timeout
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._lock = threading.Lock()
        self._routes: list[AppRoute] = []
        self._endpoints: list[Endpoint] = []
        self._counts: dict[tuple[str, str, str], TrackCounts] = defaultdict(TrackCounts)
        self._in_flight: dict[tuple[str, str], int] = defaultdict(int)
        self._stop = threading.Event()
        self._refreshed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool: ThreadPoolExecutor | None = None
        self.last_error: str | None = None
        self.listeners: list[Callable[[ClusterSnapshot], None]] = []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="traffic")
        for target, name in ((self._refresh_loop, "traffic-refresh"), (self._send_loop, "traffic-send")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def wait_refreshed(self, timeout: float = 5.0) -> bool:
        return self._refreshed.wait(timeout)

    # -- what it knows -------------------------------------------------------------------

    def routes(self) -> list[AppRoute]:
        with self._lock:
            return list(self._routes)

    def endpoints(self) -> list[Endpoint]:
        with self._lock:
            return list(self._endpoints)

    def counts(self) -> dict[tuple[str, str, str], TrackCounts]:
        """(namespace, app, track) -> counts; a copy."""
        with self._lock:
            return {k: TrackCounts(v.sent, v.failed) for k, v in self._counts.items()}

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def stats(self) -> list[dict[str, Any]]:
        """JSON-ready counters and current routing, for ``status``."""
        counts = self.counts()
        routes = {(r.namespace, r.app): r for r in self.routes()}
        out: list[dict[str, Any]] = []
        for key in sorted(set(routes) | {(ns, app) for ns, app, _ in counts}):
            route = routes.get(key)
            tracks = {t: {"sent": c.sent, "failed": c.failed} for (ns, app, t), c in counts.items() if (ns, app) == key}
            out.append(
                {
                    "namespace": key[0],
                    "app": key[1],
                    "router": route.router if route else None,
                    "weights": {b.name: b.weight for b in route.backends} if route else {},
                    "ready_pods": sorted({ep.pod for b in route.backends for ep in b.endpoints}) if route else [],
                    "tracks": tracks,
                }
            )
        return out

    # -- loops ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the cluster once and replace the routing table."""
        snapshot = ClusterSnapshot.read(self.api_client)
        table = routing_table(snapshot)
        endpoints = ready_endpoints(snapshot)
        with self._lock:
            self._routes = table
            self._endpoints = endpoints
        for listener in list(self.listeners):
            listener(snapshot)
        self._refreshed.set()

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                self.last_error = None
            except Exception as e:  # keep going: the API may be restarting or briefly busy
                self.last_error = f"{type(e).__name__}: {e}"
            self._stop.wait(self.refresh_interval)

    def _send_loop(self) -> None:
        # Token bucket per app: each tick adds rate * elapsed tokens (capped at one second's
        # worth), and every whole token becomes one request if the app's in-flight cap allows.
        tokens: dict[tuple[str, str], float] = defaultdict(float)
        last = time.monotonic()
        while not self._stop.wait(0.01):
            now = time.monotonic()
            elapsed, last = now - last, now
            for route in self.routes():
                key = (route.namespace, route.app)
                if not route.sends():
                    tokens.pop(key, None)
                    continue
                tokens[key] = min(tokens[key] + self.rate * elapsed, self.rate)
                while tokens[key] >= 1.0:
                    tokens[key] -= 1.0
                    self._dispatch(route)

    def _dispatch(self, route: AppRoute) -> None:
        key = (route.namespace, route.app)
        with self._rng_lock:
            endpoint = route.pick(self._rng)
            # A simulated user per request, drawn from a fixed population: the targeting key flag
            # evaluation buckets by, so a 10 % flag split reaches about 10 % of the requests.
            user = f"user-{self._rng.randrange(USERS)}"
        if endpoint is None:
            # Weight points at a backend with no ready pod: a gateway would answer 503.
            self._count(route, NO_ENDPOINT_TRACK, failed=True)
            return
        with self._lock:
            if self._in_flight[key] >= MAX_IN_FLIGHT_PER_APP:
                return  # bounded: a slow app gets fewer requests rather than unbounded threads
            self._in_flight[key] += 1
        pool = self._pool
        if pool is None:
            with self._lock:
                self._in_flight[key] -= 1
            return
        try:
            pool.submit(self._send, route, endpoint, user)
        except RuntimeError:  # pool shut down while stopping
            with self._lock:
                self._in_flight[key] -= 1

    def _send(self, route: AppRoute, endpoint: Endpoint, user: str) -> None:
        failed = True
        try:
            url = f"http://127.0.0.1:{endpoint.port}/?user={user}"
            with urllib.request.urlopen(url, timeout=self.request_timeout) as resp:
                resp.read()
                failed = int(resp.status) >= 500
        except urllib.error.HTTPError as e:
            with contextlib.suppress(OSError):
                e.read()
            failed = e.code >= 500
        except (urllib.error.URLError, OSError, ValueError):
            failed = True
        finally:
            with self._lock:
                self._in_flight[(route.namespace, route.app)] -= 1
        self._count(route, endpoint.track, failed=failed)

    def _count(self, route: AppRoute, track: str, *, failed: bool) -> None:
        with self._lock:
            c = self._counts[(route.namespace, route.app, track)]
            c.sent += 1
            if failed:
                c.failed += 1

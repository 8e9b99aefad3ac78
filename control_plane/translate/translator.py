"""The translator: intent -> serialised Envoy resources, remembering each model's pieces.

The control plane re-translates on every edit and every readiness change, and
building protobuf messages in Python costs far more per model than anything
else in a reload. An edit usually touches one model of many, so the
translator keeps each model's serialised clusters and routes, keyed by the
frozen IR model itself (and, for routes, the model's unready versions), and a
re-translation builds only what changed, then joins the kept pieces
(``fragments``). Whatever is not used by the latest translation is dropped,
so the memo is bounded by the policy set.
"""

from __future__ import annotations

from control_plane.ir import Model, RoutingIntent
from control_plane.translate.clusters import ModelClusters
from control_plane.translate.fragments import serialized
from control_plane.translate.listeners import listener, rds_names
from control_plane.translate.names import ROUTE_CONFIG_NAME
from control_plane.translate.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resources
from control_plane.translate.routes import ModelRoutes, route_configuration


class Translator:
    """Translates one intent after another; one per controller (not thread-safe)."""

    def __init__(self) -> None:
        self._clusters: dict[Model, ModelClusters] = {}
        self._routes: dict[tuple[Model, frozenset[str]], ModelRoutes] = {}

    def translate(self, intent: RoutingIntent, unready: frozenset[str] = frozenset()) -> Resources:
        """The whole Envoy configuration for ``intent``.

        ``unready`` holds cluster names of versions with no ready endpoint; their
        share of each split goes to the other versions.
        """
        known_clusters, kept_clusters = self._clusters, {}
        known_routes, kept_routes = self._routes, {}
        clusters: dict[str, bytes] = {}
        endpoints: dict[str, bytes] = {}
        for model in intent.models:
            pieces = known_clusters.get(model) or ModelClusters.of(model)
            kept_clusters[model] = pieces
            clusters.update(pieces.clusters)
            endpoints.update(pieces.endpoints)

        def routes_of(model: Model, unready_versions: frozenset[str]) -> ModelRoutes:
            key = (model, unready_versions)
            found = known_routes.get(key) or ModelRoutes.of(model, unready_versions)
            kept_routes[key] = found
            return found

        routes, targets = route_configuration(intent, unready, routes_of)
        built = listener(intent)
        self._clusters, self._routes = kept_clusters, kept_routes
        return Resources(
            by_type={
                CLUSTER: clusters,
                ENDPOINT: endpoints,
                LISTENER: {built.name: serialized(built)},
                ROUTE: {ROUTE_CONFIG_NAME: routes},
            },
            eds_clusters=frozenset(endpoints),
            route_targets=targets,
            rds_names=rds_names(built),
        )


def translate(intent: RoutingIntent, unready: frozenset[str] = frozenset()) -> Resources:
    """A one-off translation (validation, rendering, tests): what the controller's translator pushes."""
    return Translator().translate(intent, unready)

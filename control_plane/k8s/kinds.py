"""The lightkube classes of Switchyard's custom resources (one definition, shared by code and tests)."""

from __future__ import annotations

from lightkube.generic_resource import create_namespaced_resource

from control_plane.k8s.crd import GROUP, VERSION

ModelRoute = create_namespaced_resource(GROUP, VERSION, "ModelRoute", "modelroutes")
Gateway = create_namespaced_resource(GROUP, VERSION, "Gateway", "gateways")

# Origins name a resource as errors and the admin API show it: ``modelroutes/ml/sentiment``.
PLURALS = {"ModelRoute": "modelroutes", "Gateway": "gateways"}
CLASSES = {"ModelRoute": ModelRoute, "Gateway": Gateway}

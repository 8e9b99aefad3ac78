"""Switchyard on Kubernetes: ModelRoute and Gateway as custom resources.

``crd`` generates the CustomResourceDefinitions from the policy schema; ``kinds`` names
their lightkube classes. ``watch`` is the list+watch informer everything below uses;
``source`` turns resources into policy documents and writes changes back; ``endpoints``
keeps the EndpointSlices a Service-backed version resolves to; ``lease`` elects the one
replica that writes; ``status`` reports Accepted/Programmed; ``mode`` wires them together
for ``switchyard serve --kubernetes``.
"""

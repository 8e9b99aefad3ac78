"""The HTTP surface of a model service: routes, request checks, errors, middleware, bodies."""

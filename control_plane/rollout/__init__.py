"""Canary rollouts: a state machine stepping a candidate's share up, gated on Envoy's statistics.

``machine`` is pure (states, transitions, deadlines, gates); ``metrics`` reads
Envoy's per-cluster statistics; ``runner`` applies each step as a normal,
persisted policy change and keeps the rollout's state in the state directory.
"""

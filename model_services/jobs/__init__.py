"""Async inference jobs: a Redis Streams queue between the API and the model.

``POST /v1/jobs`` reaches a replica through Envoy like a prediction, so the
routing policy picks the version; that replica records the job and appends it
to its own version's stream. Worker tasks in every replica of that version read
the stream as one consumer group and feed jobs to the batcher at background
priority. See ``store.py`` for the Redis layout, ``runner.py`` for delivery
guarantees, ``delivery.py`` for webhooks and ``callbacks.py`` for where they
may go. Nothing here is imported unless the service runs with --redis-url.
"""

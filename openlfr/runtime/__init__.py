"""The runtime: everything that runs while a deployment is live, in ``openlfr serve`` and ``openlfr worker``.

The layer above the use cases (``openlfr.services``), below the API and the composition root (``openlfr.server``).
Threads, leases and pollers live here; the use cases they call commit each change with its audit entry.

- ``scheduler``: keeps exactly the live deployments' cameras running, one camera lease per run
- ``deployment_run``: one camera run, composed of its supervisor, its books and its guards
- ``books``: what a run writes (notes, counts, progress, audit entries, its lease) on its own thread
- ``camera_health``: each camera's typed state (connecting, streaming, stalled, ...), stored for every process
- ``listing_watch``: a listing ended after authorisation reaches the running pipeline
- ``tiles``: in-memory camera pictures for the console
- ``live_events``: the event board the console's streams (and other subscribers) follow
- ``health``: the database probe of ``/health``
- ``background``: periodic daemon threads (the retention loop)
"""

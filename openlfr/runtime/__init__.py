"""The runtime: everything that runs while a deployment is live, in ``openlfr serve`` and ``openlfr worker``.

The layer above the use cases (``openlfr.services``), below the API and the composition root (``openlfr.server``).
Threads, leases and pollers live here; the use cases they call commit each change with its audit entry.

- ``scheduler``: keeps exactly the live deployments' cameras running, one camera lease per run
- ``deployment_run``: one camera run (``DeploymentRun``, its typed ``RunStatus``), composed of the parts below
- ``supervisor``: a run's pipeline restarted with backoff, given up after the same failure again and again
  (``RunState``)
- ``books``: what a run writes (notes, counts, progress, audit entries, camera states, its lease) on its own
  thread, which also drives the run's periodic looks (stalled cameras, ended listings)
- ``camera_health``: each camera's typed state (connecting, streaming, stalled, ...), stored for every process
- ``listing_watch``: a listing ended after authorisation reaches the running pipeline
- ``tiles``: in-memory camera pictures for the console
- ``live_events``: the event board the console's streams (and other subscribers) follow
- ``health``: the database probe of ``/health``
- ``background``: periodic daemon threads (the scheduler, the retention loop)

A run has two threads of its own: its supervisor (the pipeline) and its books (every half second: writes, the
lease, stalled cameras, ended listings, every two seconds). The scheduler (every second, one per process) and
the event board (one per process) watch all runs.
"""

"""The application layer: what OpenLFR does, as use cases over a database session, called by the front doors
(``openlfr.cli``, ``openlfr.api``, ``openlfr.web``) and built on the stages below (``enrolment``, ``stream``,
``alerts``, ``store``) and the pure rules (``governance``, ``watchlist``, ``vision``).

Each use case checks the rules, changes the rows and writes its audit entry in the caller's transaction, so a
change and its record commit (or roll back) together. Who acts is a ``Context`` (``context.py``): one actor
format for people at the keyboard, accounts of the server and the server itself.

- ``deployments``: draft, authorise (and freeze the snapshot), cancel, end, close finished windows, counts
- ``reviews`` / ``alert_source``: the human side of an alert (decide, verify, outcome, hold) and what it shows
- ``records``: the published record of deployments over a period
- ``retention``: destroy what is due (snapshots, probe images, expired entries), on demand or in a loop
- ``accounts``: accounts, passwords, sessions and tokens, and the audited changes to them
- ``throttle``: failed logins and bearer tokens counted per name and address, and per address (429 past a limit)
- ``watchlists``: create, enrol (one use case for the CLI, uploads and folder imports), remove, expire, list
- ``live``: one builder of a live pipeline from settings, a watchlist snapshot and sources
- ``scans``: ``openlfr scan`` as a recorded, time-boxed deployment of the local user
- ``console`` / ``audit_log``: console settings, the audit chain
- ``sink_settings``: each configured sink's settings audited when they change (the probe crop opt-in above all)

What runs while a deployment is live (the scheduler, camera leases and runs, tiles, the event board, ``/health``)
is ``openlfr.runtime``, the layer above this one.
"""

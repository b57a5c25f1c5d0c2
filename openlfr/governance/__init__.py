"""Governance: the rules a deployment lives by, as pure functions the server, the pipeline and the tests share.

- ``deployments``: the state machine (draft -> authorised -> live inside its window -> ended / cancelled) and
  ``may_match``, the one check every matcher must pass before comparing a face with a watchlist.
- ``retention``: when a deployment's watchlist snapshot and its alerts' probe images must be destroyed.
- ``audit``: the hash chain of the append-only audit log and its verification.
- ``records``: the published record of a deployment (counts, decisions, outcomes, false-alert rate) and CSV.
- ``roles``: who may do what.
"""

"""The operator server: a FastAPI application (JSON API + server-rendered console) over the store.

Design: `openlfr serve` answers HTTP and, in the same process, runs a scheduler that starts the live pipeline
for every deployment that ``may_match`` allows and stops it when that stops being true; `openlfr worker` runs
the same scheduler without HTTP, for putting pipelines in their own process or on another machine. Server and
workers meet only in the database: alerts are committed there first, and the console's event stream announces
what it finds there.
"""

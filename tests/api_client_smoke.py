"""What a force's own tool does through a client generated from /openapi.json (``openapi-python-client generate
--path openapi.json``; docs/api.md): log in with a token, list the watchlists, draft a deployment, read it back.

``python tests/api_client_smoke.py PACKAGE_DIR BASE_URL TOKEN`` prints the deployment it drafted as JSON."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path


def main(package_dir: str, base_url: str, token: str) -> None:
    folder = Path(package_dir)
    sys.path.insert(0, str(folder.parent))
    client_package = importlib.import_module(folder.name)
    models = importlib.import_module(f"{folder.name}.models")
    watchlists_api = importlib.import_module(f"{folder.name}.api.watchlists.list_watchlists_api_watchlists_get")
    draft_api = importlib.import_module(f"{folder.name}.api.deployments.draft_deployment_api_deployments_post")
    read_api = importlib.import_module(
        f"{folder.name}.api.deployments.get_deployment_api_deployments_deployment_id_get"
    )

    client = client_package.AuthenticatedClient(base_url=base_url, token=token)
    watchlists = watchlists_api.sync(client=client)
    assert isinstance(watchlists, list) and watchlists, watchlists
    start = datetime.now(UTC) + timedelta(hours=1)
    body = models.DraftIn(
        name="High street",
        place="High Street, outside the station",
        purpose="Locate people wanted for violent offences",
        starts_at=start,
        ends_at=start + timedelta(hours=2),
        cameras=[models.CameraIn(name="entrance", source="rtsp://127.0.0.1:8554/cam")],
        watchlist=watchlists[0].name,
        threshold=0.6,
    )
    drafted = draft_api.sync_detailed(client=client, body=body)
    assert drafted.status_code == 201, drafted.content
    created = drafted.parsed
    read = read_api.sync(client=client, deployment_id=created.id)
    assert isinstance(read, models.DeploymentOut), read
    assert (read.id, read.name, read.watchlist, read.status) == (created.id, "High street", watchlists[0].name, "draft")
    print(json.dumps({"id": read.id, "name": read.name, "watchlist": read.watchlist, "status": read.status}))


if __name__ == "__main__":
    main(*sys.argv[1:4])

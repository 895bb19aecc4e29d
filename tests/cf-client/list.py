"""Logs in to a Capstan with the unmodified `cloudfoundry-client` library, as a CF user would, and
prints what it lists: organizations, spaces, apps and processes (JSON on stdout), also through list
filters (the library sends a list as one comma-joined, percent-encoded value: `types=web%2Cworker`)."""
import json
import sys

from cloudfoundry_client.client import CloudFoundryClient

target, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
client = CloudFoundryClient(target, verify=False)
client.init_with_user_credentials(user, password)
out = {
    "organizations": [o["name"] for o in client.v3.organizations],
    "spaces": [s["name"] for s in client.v3.spaces],
    "apps": [(a["name"], a["state"]) for a in client.v3.apps],
    "processes": sorted((p["type"], p["instances"]) for p in client.v3.processes),
    "filtered": sorted(
        (p["type"], p["instances"]) for p in client.v3.processes.list(types=["web", "worker"])
    ),
    "apps_by_name": [a["name"] for a in client.v3.apps.list(names=["shop", "no-such-app"])],
    "web": client.v3.processes.get(sys.argv[4])["command"] if len(sys.argv) > 4 else None,
}
print(json.dumps(out))

"""Reads, sets and restarts with the unmodified `cloudfoundry-client` library, as a CF user would:
the app's environment (`get_env`), a PATCH of its environment variables through the library's own
request path, the environment read again, and a restart. Prints JSON on stdout."""
import json
import sys

from cloudfoundry_client.client import CloudFoundryClient

target, user, password, app = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
client = CloudFoundryClient(target, verify=False)
client.init_with_user_credentials(user, password)
apps = client.v3.apps
before = apps.get_env(app)["environment_variables"]
url = "%s/v3/apps/%s/environment_variables" % (target, app)
apps._patch(url, {"var": {"DB_URL": "s3cret-three", "FROM_PYTHON": "yes"}})
after = apps.get_env(app)["environment_variables"]
restarted = apps.restart(app)["state"]
print(json.dumps({"before": before, "after": after, "restarted": restarted}))

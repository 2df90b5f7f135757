"""The values cc_sync's tests share: ``tests/settings.py`` configures cc_sync with them, tests expect them."""

from __future__ import annotations

import base64

from rig import ROOT

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret"
LIST_ID = "07936f78-662a-11eb-af0a-fa163e56c9b0"
ACCESS_TOKEN = "access-token-0123456789abcdef0123456789"
REFRESH_TOKEN = "refresh-token-0123456789abcdef0123456789"
SCOPES = "contact_data offline_access account_read"
# CC's endpoints as tests/settings.py configures them, for the requests the tests expect.
AUTHORIZE_URL = "https://authz.cc.test/oauth2/default/v1/authorize"
TOKEN_URL = "https://authz.cc.test/oauth2/default/v1/token"
DEVICE_URL = "https://authz.cc.test/oauth2/default/v1/device/authorize"
API_URL = "https://api.cc.test/v3"
SIGN_UP_URL = f"{API_URL}/contacts/sign_up_form"
CONTACTS_URL = f"{API_URL}/contacts"
ADD_LISTS_URL = f"{API_URL}/activities/add_list_memberships"
REDIRECT_URI = "https://site.example/admin/cc_sync/connection/callback/"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()}

# CC's OpenAPI contract (build 3.0.161), kept beside the checkout rather than in it.
SPEC_PATH = ROOT.parent / "shared" / "reference" / "cc-v3-openapi.yaml"

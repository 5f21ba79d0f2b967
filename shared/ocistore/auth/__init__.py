"""Authentication and access control: zot's `http.auth` (htpasswd) and `http.accessControl`.

`Access.decide` is the one decision every route of the API asks (see gate.py); the policy
evaluation is policy.py, the logins htpasswd.py. Nothing here knows HTTP frameworks: the
API's adapter reads the headers and writes the answers.
"""

from .gate import Access, Credentials, Decision, Kind, Need, Outcome
from .htpasswd import Htpasswd, HtpasswdError, parse_htpasswd
from .policy import ANONYMOUS, CREATE, DELETE, READ, UPDATE, Identity, Policies, manifest_write_actions

__all__ = ["ANONYMOUS", "CREATE", "DELETE", "READ", "UPDATE", "Access", "Credentials", "Decision", "Htpasswd",
           "HtpasswdError", "Identity", "Kind", "Need", "Outcome", "Policies", "manifest_write_actions",
           "parse_htpasswd"]

"""Schemathesis hooks for tests/reliability/api_fuzz.py (SCHEMATHESIS_HOOKS): every
response is logged (status, operation, whether this role may call it), and a check fails
any answer the operation's x-roles do not allow (a permission violation)."""
import json
import os

import schemathesis

ROLE = os.environ.get("SM_FUZZ_ROLE", "")
LOG = os.environ.get("SM_FUZZ_LOG", "")


def _allowed(case):
    return ROLE in case.operation.definition.raw.get("x-roles", [])


@schemathesis.hook
def after_call(context, case, response):
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps({"op": case.operation.label, "status": response.status_code,
                                "allowed": _allowed(case)}) + "\n")


@schemathesis.check
def refused_unless_allowed(ctx, response, case):
    """A role the operation does not allow gets 403, whatever it sends (400 or 404 would
    tell it something of the input's validity or of what exists)."""
    if not _allowed(case) and response.status_code not in (403, 405):
        raise AssertionError(f"{ROLE} got {response.status_code} from {case.operation.label}, "
                             "which its x-roles refuse it")
    return True

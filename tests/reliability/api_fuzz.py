"""Schemathesis against the running app, as each role (issue 21).

The app is served by gunicorn on omeroweb.wsgi with the demo's settings (the stand-in
gateway for the user signed in at /demo/), on the test bed's real PostgreSQL (the app's
database and a generated facility); Schemathesis reads /storagemanager/api/v1/openapi.json
and sends generated requests (examples, coverage, fuzzing, stateful phases, links on) as
each role, with the session cookie and the CSRF token. Counted: requests, responses 5xx,
responses that break the description (status, content type, schema, invalid input
accepted), permission violations (an answer other than 403 where the operation's
x-roles refuse the role; tests/reliability/api_fuzz_hooks.py).

Full run (>= 5,000 requests; writes docs/reliability/api-fuzz.json and re-renders
docs/reliability.md):
    .venv/bin/python -m tests.reliability.api_fuzz
The pytest test (tests/reliability/test_api_fuzz.py) runs a quick form into a temporary
directory.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from tests.reliability.report import REPO, conclude, record

# OMERO's roles (permissions.py), and OMERO's guest (id 1), whom the app refuses
# everything; the anonymous caller is added below.
ROLES = {"member": "chloe", "group_owner": "alice", "restricted_admin": 900,
         "admin": "ingrid", "guest": 1}
BASE = "/storagemanager/api/v1"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,negative_data_rejection,unsupported_method,"
          "refused_unless_allowed")


def log(message):
    print(f"[api-fuzz {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _world(facility, workdir):
    """The facility synced into the app, a current location with a verified copy, a
    failed job and a pending request, so the operations have something to act on."""
    from omero_storagemanager import settings
    from omero_storagemanager.models import Collection, Copy, Job, Request
    from tests.api_support import add_restricted_admin, disk_location, sync, user_ids

    add_restricted_admin(facility)
    settings.OMERO_DB = {"dsn": facility.dsn}
    sync(facility)
    ids = user_ids(facility) | {"rita": 900}
    location = disk_location(Path(workdir) / "archive")
    c = Collection.objects.get(kind="project", omero_id=4)
    now = datetime.now(timezone.utc)
    Copy.objects.create(collection=c, location=location, bag_path="bag", state=Copy.VERIFIED,
                        created=now, verified_at=now, files=1, bytes=10)
    job = Job.objects.create(kind="audit", state=Job.FAILED, requested_by_id=ids["chloe"],
                             requested_by_name="chloe")
    job.collections.set([c])
    Request.objects.create(kind="archive", collection=c, requested_by_id=ids["chloe"],
                           requested_by_name="chloe")
    return ids


def _fuzz_role(port, role, user_id, examples, seed, workdir):
    from tests.reliability.matrix_services import Client

    client = Client(port)
    client.get("/api/v0/token/")
    if user_id is not None:
        client.sign_in(user_id, landing="/demo/" if role == "guest" else "/storagemanager/")
    cookies = {c.name: c.value for c in client.jar}
    responses = Path(workdir) / f"responses-{role}.ndjson"
    responses.unlink(missing_ok=True)
    env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.reliability.api_fuzz_hooks",
               SM_FUZZ_ROLE=role, SM_FUZZ_LOG=str(responses), PYTHONPATH=str(REPO))
    # The description as served, from a file: the anonymous caller may read it too, but
    # the demo's sign-in middleware asks every caller of the app to sign in first.
    from omero_storagemanager.views.openapi import description

    spec = Path(workdir) / "openapi.json"
    spec.write_text(json.dumps(description(BASE)))
    # 414 (the app's answer to a query string over 4,000 characters) is a refusal too.
    (Path(workdir) / "schemathesis.toml").write_text(
        "[checks.negative_data_rejection]\n"
        "expected-statuses = [400, 401, 403, 404, 405, 406, 409, 414, 415, 422]\n")
    args = [str(Path(sys.executable).with_name("st")), "run", str(spec),
            "--url", f"http://127.0.0.1:{port}{BASE}",
            "--header", "Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()),
            "--header", f"X-CSRFToken: {cookies.get('csrftoken', '')}",
            "--checks", CHECKS, "--max-examples", str(examples), "--seed", str(seed),
            "--phases", "examples,coverage,fuzzing,stateful", "--workers", "1",
            "--continue-on-failure", "--no-color"]
    started = time.monotonic()
    proc = subprocess.run(args, env=env, cwd=str(workdir), capture_output=True, text=True,
                          timeout=3600)
    seconds = time.monotonic() - started
    (Path(workdir) / f"schemathesis-{role}.txt").write_text(proc.stdout + proc.stderr)
    lines = [json.loads(line) for line in responses.read_text().splitlines()] \
        if responses.exists() else []
    statuses = Counter(line["status"] for line in lines)
    refused_wrongly = [line for line in lines if not line["allowed"]
                       and line["status"] not in (403, 405)]
    failures = _failures(proc.stdout)
    return {"role": role, "requests": len(lines), "server_errors": sum(
        n for s, n in statuses.items() if s >= 500), "schema_failures": failures,
        "permission_violations": len(refused_wrongly), "statuses": dict(statuses),
        "seconds": seconds, "exit": proc.returncode, "output": _failure_section(proc.stdout)}


def _failure_section(output):
    """What Schemathesis says of each failure (its FAILURES section), cut short."""
    start = output.find("FAILURES")
    end = output.find("WARNINGS", start)
    text = output[start:end if end > 0 else None] if start >= 0 else output[-1500:]
    return text[:4000]


def _failures(output):
    """{code and title: count} of the failures in Schemathesis's summary."""
    found = {}
    section = output.split("Failures:", 1)[1] if "Failures:" in output else ""
    section = re.split(r"\n\s*\n", section.lstrip("\n"), maxsplit=1)[0]
    for match in re.finditer(r"(ST\d+) (.+?): (\d+)\s*$", section, re.M):
        found[f"{match.group(1)} {match.group(2)}"] = int(match.group(3))
    return found


def _web(omerodir, port, log_path):
    """matrix_services.Web with gunicorn's request-line limit off (--limit-request-line
    0): beyond its 4094 bytes gunicorn answers an HTML 414 itself; here the app's JSON
    414 answers every long query (docs/api.md)."""
    from tests.reliability.matrix_services import Group, Web, service_env

    web = Web.__new__(Web)
    web.port = port
    Group.__init__(web, [sys.executable, "-m", "gunicorn", "omeroweb.wsgi:application",
                         "--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "60",
                         "--limit-request-line", "0"],
                   service_env(omerodir, "testbed.demo_settings"), log_path)
    return web


def run_part(facility, server, workdir, quick=False, log=log, seed=21):
    from tests.reliability.matrix_services import Client, services_omerodir

    ids = _world(facility, workdir)
    s = SimpleNamespace(root=Path(workdir), server=server, world=facility,
                        omerodir_settings=dict)  # no settings besides (matrix.Setup's)
    omerodir = services_omerodir(s, web=True)
    port = _free_port()
    web = _web(omerodir, port, Path(workdir) / "web.log")
    rows, violations, total = [], [], 0
    try:
        web.wait_up(Client(port))
        examples = 2 if quick else 8
        users = {role: ids[who] if isinstance(who, str) else who for role, who in ROLES.items()}
        users["anonymous"] = None
        for role, user_id in users.items():
            log(f"{role}: Schemathesis, {examples} examples an operation")
            result = _fuzz_role(port, role, user_id, examples, seed, workdir)
            total += result["requests"]
            schema = sum(result["schema_failures"].values())
            rows.append([role, result["requests"], result["server_errors"], schema,
                         result["permission_violations"], f"{result['seconds']:.0f}"])
            if result["server_errors"] or schema or result["permission_violations"]:
                violations.append(f"{role}: {result['server_errors']} 5xx, schema "
                                  f"{result['schema_failures']}, "
                                  f"{result['permission_violations']} permission: "
                                  f"{result['output']}")
            if result["requests"] == 0:
                violations.append(f"{role}: no request was sent: {result['output'][-1500:]}")
    finally:
        web.stop()
    command = ".venv/bin/python -m tests.reliability.api_fuzz" + (" --quick" if quick else "")
    return {
        "part": "api-fuzz", "order": 65, "title": "The JSON API under Schemathesis",
        "command": command,
        "intro": ("Schemathesis reads the served OpenAPI description and sends generated "
                  "requests (examples, coverage, fuzzing and stateful phases, the "
                  "description's links on) to the app served by gunicorn on the test bed's "
                  "PostgreSQL, signed in as each role (the anonymous caller too), with the "
                  "session cookie and the CSRF token. A trial is one request. Counted: "
                  "answers 5xx; answers that break the description (status, content type, "
                  "schema) or accept input it calls invalid; permission violations (anything "
                  "but 403 where the operation's x-roles refuse the role)."),
        "trials": total, "lost": 0,
        "columns": ["role", "requests", "5xx", "schema violations", "permission violations",
                    "seconds"],
        "rows": rows, "violations": violations,
        "notes": ["guest is OMERO's built-in guest user (id 1), signed in through the "
                  "demo's sign-in as OMERO.web's public user would be: no operation's "
                  "x-roles allow it, so every answer but 403 (or 405) is a violation."],
    }


def main(argv=None):
    import argparse

    from tests.reliability.security import standalone

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    def part(facility, server, workdir):
        return run_part(facility, server, workdir, quick=args.quick)

    result = standalone(part, None)
    record(result)
    return conclude(result)


if __name__ == "__main__":
    sys.exit(main())

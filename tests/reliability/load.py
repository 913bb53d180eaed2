"""Load: many concurrent UI/API clients against the demo stack while jobs run.

Issue 7 (reliability). One run:
  1. starts the demo exactly as `scripts/demo.sh` does (`python -m testbed.demo`: embedded
     PostgreSQL, a generated facility, the real OMERO.web under gunicorn with this app, a
     django-q2 cluster) on a free port, in its own process group;
  2. signs in N clients through /demo/ (cookie, CSRF token, POST), round robin over every
     demo user, so administrators and plain users (group owners, members) are mixed;
  3. while a feeder (the admin) keeps the django-q2 cluster busy (a verify scan of every
     collection whenever its previous one ended, archives of collections still online),
     each client loops for --seconds over a realistic mix: the Storage tab's pages, the
     collections API with sorts, quick and rule filters and pages, statistics and usage,
     the job list and one job, the webclient plugins' object look-ups and breakdowns,
     status;
  4. counts every answer. An error is any 5xx, any 4xx (every request of the mix is one
     the user may make), and any connection error or timeout. Goal: zero errors, and
     jobs completed during the load.

Full run (writes docs/reliability/load.json and re-renders docs/reliability.md):
    .venv/bin/python -m tests.reliability.load
The pytest test (tests/reliability/test_load.py) runs 10 clients for 10 s and records
into a temporary directory.
"""
import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("page", "collections", "statistics", "jobs", "objects", "status")
SORTS = ("name", "-name", "size", "-size", "files", "-files", "last_access", "-newest",
         "owner", "-group", "state", "-archived", "created", "-last_scan")
RULES = ("state is online", "size above 1 MB", "files at least 10", "kind is project",
         "last access before 2030-01-01", "archived size above 0", "state is not purged",
         "newest file before 30 days ago")
QUICK = ("a", "Project", "Screen", "alice", "Cell", "Imaging", "1", "live")
WEIGHTS = {"page": 2, "collections": 5, "statistics": 2, "jobs": 2, "objects": 3, "status": 1}
TIMEOUT = 60  # seconds, one request


def log(message):
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values, fraction):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


# -- the demo stack -----------------------------------------------------------------------

class Demo:
    """`python -m testbed.demo` in its own process group; users parsed from its output."""

    def __init__(self, base, port, workers=2):
        from testbed.pg import free_port

        self.base = Path(base)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        for key in ("DJANGO_SETTINGS_MODULE", "OMERODIR"):
            env.pop(key, None)
        self.out_path = self.base / "demo.out"
        self.base.mkdir(parents=True, exist_ok=True)
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "testbed.demo", "--port", str(self.port),
             "--dir", str(self.base / "demo"), "--workers", str(workers)],
            env=env, cwd=str(REPO), stdout=self.out, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.users = {}

    def output(self):
        return self.out_path.read_text(errors="replace")

    def wait_ready(self, bound=240):
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            text = self.output()
            if "Ctrl-C stops everything" in text:
                for name, uid in re.findall(r"\[demo\]\s+(\S+)\s+id (\d+)\s", text):
                    self.users[name] = int(uid)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("the demo ended before it was ready:\n" + text[-3000:])
            time.sleep(0.3)
        raise RuntimeError(f"the demo was not ready within {bound} s:\n" + self.output()[-3000:])

    def logs(self):
        """gunicorn and qcluster logs of the demo (tracebacks end up there)."""
        folder = self.base / "demo" / "var" / "log"
        return {p.name: p.read_text(errors="replace") for p in folder.glob("*.log")} \
            if folder.is_dir() else {}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the demo stops its children and PG
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.out.close()


# -- one client -----------------------------------------------------------------------------

class Client:
    def __init__(self, url, user_id):
        import requests

        self.url, self.user_id = url, user_id
        self.http = requests.Session()
        self.admin = False
        self.keys, self.datasets, self.jobs = [], [], []

    def sign_in(self):
        form = self.http.get(self.url + "/demo/", timeout=TIMEOUT)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        answer = self.http.post(self.url + "/demo/", timeout=TIMEOUT,
                                data={"csrfmiddlewaretoken": token, "user_id": self.user_id,
                                      "url": "/storagemanager/"},
                                headers={"Referer": self.url + "/demo/"})
        if answer.status_code != 200 or "Storage" not in answer.text:
            raise RuntimeError(f"sign-in of user {self.user_id}: HTTP {answer.status_code}")
        status = self.http.get(self.url + "/storagemanager/api/v1/status/", timeout=TIMEOUT)
        self.admin = bool(status.json()["user"]["admin"])
        self.learn()
        return self

    def learn(self):
        """What this user may see: its collections, their datasets, a few jobs."""
        api = self.url + "/storagemanager/api/v1/"
        items = self.http.get(api + "collections/", params={"per_page": 200},
                              timeout=TIMEOUT).json()["items"]
        self.keys = [i["key"] for i in items]
        for key in self.keys[:6]:
            kind, oid = key.split(":")
            answer = self.http.get(api + "breakdown/", params={"objects": f"{kind.lower()}-{oid}"},
                                   timeout=TIMEOUT)
            for c in answer.json().get("collections", []):
                self.datasets += [(r["type"], r["id"]) for r in c["children"]
                                  if r.get("type") in ("dataset", "plate") and r.get("id")]

    def csrf_post(self, path, body):
        token = self.http.cookies.get("csrftoken", "")
        return self.http.post(self.url + path, json=body, timeout=TIMEOUT,
                              headers={"X-CSRFToken": token, "Referer": self.url + "/"})

    def pick(self, rng):
        """(class, path, params) of the next request of the mix."""
        cls = rng.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]
        api = "/storagemanager/api/v1/"
        if cls == "page":
            return cls, rng.choice(["/storagemanager/", "/storagemanager/collections/",
                                    "/storagemanager/statistics/", "/storagemanager/jobs/"]), {}
        if cls == "collections":
            params = {"sort": rng.choice(SORTS), "per_page": rng.choice([10, 25, 50, 100])}
            roll = rng.random()
            if roll < 0.3:
                params["q"] = rng.choice(QUICK)
            elif roll < 0.6:
                params["rule"] = rng.sample(RULES, rng.choice([1, 1, 2]))
            if rng.random() < 0.3:
                params["page"] = rng.choice([1, 2, 3])
            if rng.random() < 0.2:
                params["kind"] = rng.choice(["project", "screen"])
            return cls, api + "collections/", params
        if cls == "statistics":
            return cls, api + rng.choice(["statistics/", "usage/"]), {}
        if cls == "jobs":
            if self.jobs and rng.random() < 0.3:
                return cls, f"{api}jobs/{rng.choice(self.jobs)}/", {}
            return cls, api + "jobs/", {"state": rng.choice(["all", "active", "history"]),
                                        "per_page": rng.choice([20, 50])}
        if cls == "objects" and self.keys:
            roll = rng.random()
            key = rng.choice(self.keys)
            kind, oid = key.split(":")
            if roll < 0.3 and self.datasets:
                dtype, did = rng.choice(self.datasets)
                return cls, f"{api}objects/{dtype}/{did}/", {}
            if roll < 0.55:
                return cls, f"{api}objects/{kind.lower()}/{oid}/", {}
            if roll < 0.8:
                return cls, f"{api}collections/{key}/", {}
            return cls, api + "breakdown/", {"objects": f"{kind.lower()}-{oid}"}
        return "status", api + "status/", {}


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.times = defaultdict(list)
        self.errors = []
        self.requests = 0
        self.users = defaultdict(int)

    def add(self, cls, seconds, who):
        with self.lock:
            self.times[cls].append(seconds * 1000)
            self.requests += 1
            self.users[who] += 1

    def error(self, text):
        with self.lock:
            self.requests += 1
            self.errors.append(text)


def client_loop(client, rng, stop, tally):
    who = "admin" if client.admin else "user"
    while not stop.is_set():
        cls, path, params = client.pick(rng)
        started = time.perf_counter()
        try:
            answer = client.http.get(client.url + path, params=params, timeout=TIMEOUT)
        except Exception as e:  # noqa: BLE001 - connection refused, reset, timeout
            tally.error(f"{cls} {path} {params}: {type(e).__name__}: {e}"[:300])
            continue
        elapsed = time.perf_counter() - started
        if answer.status_code != 200:
            tally.error(f"{cls} {path} {params} as user {client.user_id}: HTTP "
                        f"{answer.status_code}: {answer.text[:200]}")
            continue
        tally.add(cls, elapsed, who)
        if cls == "jobs" and path.endswith("/jobs/"):
            client.jobs = [j["id"] for j in answer.json()["items"][:20]] or client.jobs


def feeder_loop(admin, stop, tally, submitted):
    """Keep the cluster busy: verify scans of everything, archives of what is online."""
    api = "/storagemanager/api/v1/"
    archived = set()
    while not stop.is_set():
        for key in admin.keys:
            if stop.is_set():
                break
            bodies = [{"action": "scan", "mode": "verify", "collections": [key]}]
            if key not in archived:
                bodies.append({"action": "archive", "collections": [key]})
            for body in bodies:
                try:
                    answer = admin.csrf_post(api + "actions/", body)
                except Exception as e:  # noqa: BLE001
                    tally.error(f"feeder {body}: {type(e).__name__}: {e}"[:300])
                    continue
                if answer.status_code == 202:
                    submitted[body["action"]] += 1
                    if body["action"] == "archive":
                        archived.add(key)
                elif answer.status_code == 409:  # busy, or state forbids: expected
                    submitted["refused (busy)"] += 1
                    if body["action"] == "archive" and "purged" in answer.text:
                        archived.add(key)
                else:
                    tally.error(f"feeder {body}: HTTP {answer.status_code}: {answer.text[:200]}")
        stop.wait(1.0)


def job_counts(admin):
    """{state: n} of every job, through the API as the admin."""
    counts, page = defaultdict(int), 1
    while True:
        answer = admin.http.get(admin.url + "/storagemanager/api/v1/jobs/",
                                params={"per_page": 200, "page": page}, timeout=TIMEOUT).json()
        for j in answer["items"]:
            counts[j["state"]] += 1
        if page >= answer["pages"]:
            return counts
        page += 1


def run_load(url, users, clients=50, seconds=60, seed=1, log=log):
    """Sign in `clients` clients (round robin over `users`, {name: id}), run the mix for
    `seconds` while the feeder submits jobs. Returns a dict of figures."""
    ids = sorted(users.values())
    rng = random.Random(seed)
    signed = []
    for i in range(clients):
        signed.append(Client(url, ids[i % len(ids)]).sign_in())
    admins = [c for c in signed if c.admin]
    if not admins or len(admins) == len(signed):
        raise RuntimeError("the load needs administrators and plain users among the clients")
    feeder = Client(url, admins[0].user_id).sign_in()
    before = job_counts(feeder)
    tally, stop = Tally(), threading.Event()
    submitted = defaultdict(int)
    threads = [threading.Thread(target=feeder_loop, args=(feeder, stop, tally, submitted),
                                daemon=True)]
    threads += [threading.Thread(target=client_loop,
                                 args=(c, random.Random(rng.random()), stop, tally), daemon=True)
                for c in signed]
    log(f"{len(signed)} clients signed in ({len(admins)} admins, "
        f"{len({c.user_id for c in signed})} users); running {seconds} s")
    started = time.monotonic()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(TIMEOUT + 5)
    elapsed = time.monotonic() - started
    after = job_counts(feeder)
    finished = {s: after.get(s, 0) - before.get(s, 0) for s in ("done", "failed", "cancelled")}
    return {"clients": len(signed), "admins": len(admins),
            "users": len({c.user_id for c in signed}), "seconds": elapsed,
            "requests": tally.requests, "errors": tally.errors,
            "times": dict(tally.times), "by_role": dict(tally.users),
            "submitted": dict(submitted), "jobs_finished": finished,
            "jobs_active_after": sum(after.get(s, 0) for s in ("queued", "running", "waiting")),
            "jobs_before": dict(before)}


def server_tracebacks(demo):
    """Tracebacks and 5xx lines in the demo's server logs (a second error count)."""
    found = []
    for name, text in demo.logs().items():
        found += [f"{name}: {line[:200]}" for line in text.splitlines()
                  if "Traceback" in line or re.search(r'" 5\d\d ', line)]
    return found


def result_for(figures, command, tracebacks=()):
    rows = []
    everything = [t for ts in figures["times"].values() for t in ts]
    for cls in CLASSES + ("all",):
        ts = everything if cls == "all" else figures["times"].get(cls, [])
        rows.append([cls, len(ts), f"{percentile(ts, 0.50):.0f}", f"{percentile(ts, 0.95):.0f}",
                     f"{percentile(ts, 0.99):.0f}", f"{max(ts) if ts else 0:.0f}"])
    errors = len(figures["errors"])
    rate = figures["requests"] / figures["seconds"] if figures["seconds"] else 0
    done = figures["jobs_finished"]
    rows.append(["errors (5xx, 4xx, connection)", errors, "", "", "", ""])
    rows.append(["server tracebacks or 5xx in logs", len(tracebacks), "", "", "", ""])
    violations = [f"error: {e}" for e in figures["errors"][:20]]
    violations += [f"server log: {t}" for t in list(tracebacks)[:10]]
    if done["done"] < 1:
        violations.append("no job completed during the load")
    return {
        "part": "load", "order": 40, "title": "Load", "command": command,
        "intro": (
            f"The demo stack (`python -m testbed.demo`: real OMERO.web under gunicorn with 2 "
            f"workers, a django-q2 cluster, embedded PostgreSQL, generated facility) on one "
            f"machine with the clients. {figures['clients']} clients signed in through "
            f"/demo/ as {figures['users']} different users ({figures['admins']} clients "
            f"admin, the others group owners and members) looped for "
            f"{figures['seconds']:.0f} s over the Storage tab's pages, the collections API "
            f"(sorts, quick and rule filters, pages), statistics and usage, the job list and "
            f"jobs, the webclient plugins' object look-ups and breakdowns, and status, while "
            f"an admin kept the cluster busy (verify scans of every collection, archives): "
            f"{figures['requests']} requests ({rate:.0f}/s); "
            f"{sum(figures['submitted'].get(k, 0) for k in ('scan', 'archive'))} jobs "
            f"submitted, {done['done']} done and {done['failed']} failed during the load. "
            f"A trial is one request; an error is a 5xx, any 4xx (every request of the mix "
            f"is allowed to its user) or a connection error: goal 0. Latencies in ms, from "
            f"the client, queueing in gunicorn included."),
        "trials": figures["requests"], "lost": 0,
        "columns": ["endpoint class", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        "rows": rows, "violations": violations,
        "notes": [
            f"Jobs: submitted {dict(sorted(figures['submitted'].items()))}; finished during "
            f"the load {done}; still active at the end {figures['jobs_active_after']}.",
            f"Requests by role: {dict(sorted(figures['by_role'].items()))}.",
            "Clients and server share the machine's cores, so latencies include the "
            "clients' own CPU use; gunicorn runs 2 sync workers, as the demo starts it.",
        ],
    }


def run(clients, seconds, seed, workdir=None, log=log):
    """Start the demo, run the load, stop the demo. Returns (figures, tracebacks)."""
    import shutil

    base = Path(tempfile.mkdtemp(prefix="sm-load-", dir=workdir))
    demo = Demo(base, None)
    try:
        demo.wait_ready()
        log(f"demo ready at {demo.url} with users {demo.users}")
        figures = run_load(demo.url, demo.users, clients, seconds, seed, log=log)
        tracebacks = server_tracebacks(demo)
        return figures, tracebacks
    finally:
        demo.stop()
        shutil.rmtree(base, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from tests.reliability.report import record

    command = ".venv/bin/python -m tests.reliability.load" + (
        f" --clients {args.clients}" if args.clients != 50 else "") + (
        f" --seconds {args.seconds:g}" if args.seconds != 60 else "") + (
        f" --seed {args.seed}" if args.seed != 1 else "")
    figures, tracebacks = run(args.clients, args.seconds, args.seed)
    result = result_for(figures, command, tracebacks)
    record(result)
    from tests.reliability.report import conclude

    return conclude(result)


if __name__ == "__main__":
    sys.exit(main())

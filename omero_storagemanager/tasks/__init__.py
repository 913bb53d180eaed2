"""Jobs on django-q2, one small module per role:

    queue.py     submit, cancel, retry; dispatch the jobs that may run now
    runner.py    the task a django-q2 worker runs: claim a job, run it, record the end
    handle.py    what a running job gives the engine: progress, log, heartbeat, cancel
    handlers.py  one function per job kind, each a call into the engine
    monitor.py   the periodic look: dead workers, waiting jobs, lost tasks

The Job row is the truth, not the queue: django-q2 delivers at least once (and retries
a killed task), so every task only *asks* to run its job, and the runner decides.
"""

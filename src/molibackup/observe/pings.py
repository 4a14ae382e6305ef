"""Dead-man's-switch pings in the Healthchecks.io / Cronitor convention.

`URL/start` when a job begins, `URL` when it succeeds, `URL/fail` when it fails; the run id
goes along as `?rid=` (so the service pairs start and end), the job's summary as the body.
A ping URL is a secret (whoever has it can ping): it is never logged.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from loguru import logger

from molibackup import __version__
from molibackup.config import GlobalSettings
from molibackup.observe import Finished, JobRun

MAX_BODY = 10_000  # Healthchecks.io keeps the first 10 kB of a ping's body


def ping_url(base: str, event: str, run_id: str) -> str:
    """base + /start or /fail (none for success), with ?rid= added to its query."""
    parts = urllib.parse.urlsplit(base)
    path = parts.path.rstrip("/") + (f"/{event}" if event else "")
    query = urllib.parse.urlencode([*urllib.parse.parse_qsl(parts.query), ("rid", run_id)])
    return urllib.parse.urlunsplit(parts._replace(path=path, query=query))


class PingReporter:
    def __init__(self, settings: GlobalSettings) -> None:
        self.default_url = settings.ping_url
        self.timeout = settings.metrics.timeout

    def url_for(self, run: JobRun) -> str | None:
        return run.job.ping_url or self.default_url

    def job_started(self, run: JobRun) -> None:
        base = self.url_for(run)
        if base:
            self.send(run, ping_url(base, "start", run.run_id), "start",
                      f"molibackup job {run.job.name} started (run {run.run_id})")

    def job_finished(self, run: JobRun, finished: Finished) -> None:
        base = self.url_for(run)
        if not base:
            return
        result = finished.result
        event = "" if finished.succeeded else "fail"
        lines = [f"job {run.job.name}: {result.status}: {result.summary()} "
                 f"in {finished.duration_seconds:.1f} s (run {run.run_id})", *result.errors]
        self.send(run, ping_url(base, event, run.run_id), event or "success",
                  "\n".join(lines)[:MAX_BODY])

    def send(self, run: JobRun, url: str, event: str, body: str) -> None:
        log = logger.bind(job=run.job.name)
        request = urllib.request.Request(
            url, data=body.encode("utf-8"), method="POST",
            headers={"Content-Type": "text/plain; charset=utf-8",
                     "User-Agent": f"molibackup/{__version__}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(1024)
        except urllib.error.HTTPError as exc:
            log.warning(f"ping '{event}' not delivered: the server answered HTTP {exc.code}")
            return
        except Exception as exc:  # a monitoring outage must never fail a backup
            reason = getattr(exc, "reason", None) or exc
            log.warning(f"ping '{event}' not delivered: {type(exc).__name__}: "
                        f"{str(reason)[:200]}")
            return
        log.info(f"ping '{event}' delivered")

"""Posting alerts to the webhook (httpx), with retries, backoff and jitter.

One sender thread takes alerts from the :class:`~sharing_guard.alerts.queue.AlertQueue`
in order and posts each until the webhook accepts it (2xx), refuses it for good (a 4xx
other than 408/425/429: logged and counted as ``rejected``), ``max_attempts`` is reached,
or the process stops. A slow or absent webhook only fills the queue; the consumer never
waits for it. Logs name the alert (kind and id: opaque event ids and order references)
and the failure (status code or exception type), never the URL, the secret or a body.
"""

import logging
import random
import threading
import time
from collections.abc import Callable
from enum import StrEnum

import httpx

from sharing_guard.alerts.core import (
    Alert,
    backoff_delay,
    encode_payload,
    retryable,
    signature,
)
from sharing_guard.alerts.queue import AlertQueue, Queued
from sharing_guard.alerts.telemetry import AlertsTelemetry

log = logging.getLogger("sharing_guard.alerts.delivery")

ALERT_ID_HEADER = "X-Sharing-Guard-Alert-Id"
KIND_HEADER = "X-Sharing-Guard-Alert-Kind"
TIMESTAMP_HEADER = "X-Sharing-Guard-Timestamp"
SIGNATURE_HEADER = "X-Sharing-Guard-Signature"


class Attempt(StrEnum):
    """How one post ended."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    STATUS = "status"
    TIMEOUT = "timeout"
    CONNECT = "connect"
    ERROR = "error"


class WebhookSender:
    """Delivers queued alerts one at a time, in order."""

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        secret: bytes | None,
        telemetry: AlertsTelemetry,
        *,
        backoff: tuple[float, float, float] = (0.5, 60.0, 0.5),
        max_attempts: int = 0,
        clock: Callable[[], float] = time.time,
        unit_random: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.url = url
        self.secret = secret
        self.telemetry = telemetry
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.clock = clock
        self.unit_random = unit_random

    def run(self, queue: AlertQueue, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set (the alert in hand is then counted as dropped)."""
        while not stop.is_set():
            item = queue.get(timeout_s=0.5)
            if item is not None:
                self.deliver(item, stop)

    def deliver(self, item: Queued, stop: threading.Event) -> bool:
        """Post one alert until it is accepted or given up; ``True`` if delivered."""
        alert = item.alert
        kind = {"kind": alert.kind.value}
        body = encode_payload(alert.payload(item.raised_at))
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                self.telemetry.retries.add(1, kind)
            result, status = self._post(alert, body)
            if result is Attempt.DELIVERED:
                self.telemetry.delivered.add(1, kind)
                if attempt > 1:
                    log.info("alert %s delivered after %d attempts", alert.alert_id, attempt)
                return True
            if result is Attempt.REJECTED:
                self.telemetry.dropped.add(1, {**kind, "reason": "rejected"})
                log.error("webhook rejected alert %s with status %s", alert.alert_id, status)
                return False
            self.telemetry.failures.add(1, {**kind, "reason": result.value})
            log.warning(
                "alert %s attempt %d failed: %s", alert.alert_id, attempt, status or result.value
            )
            if self.max_attempts and attempt >= self.max_attempts:
                self.telemetry.dropped.add(1, {**kind, "reason": "gave_up"})
                log.error("alert %s given up after %d attempts", alert.alert_id, attempt)
                return False
            base, cap, jitter = self.backoff
            if stop.wait(backoff_delay(attempt, base, cap, jitter, self.unit_random())):
                self.telemetry.dropped.add(1, {**kind, "reason": "shutdown"})
                log.warning("alert %s not delivered: shutting down", alert.alert_id)
                return False

    def _post(self, alert: Alert, body: bytes) -> tuple[Attempt, str | None]:
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            ALERT_ID_HEADER: alert.alert_id,
            KIND_HEADER: alert.kind.value,
            TIMESTAMP_HEADER: str(timestamp),
        }
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.secret, timestamp, body)
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Attempt.TIMEOUT, None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
            return Attempt.CONNECT, None
        except httpx.HTTPError as exc:
            return Attempt.ERROR, type(exc).__name__
        status = response.status_code
        if 200 <= status < 300:
            return Attempt.DELIVERED, None
        if retryable(status):
            return Attempt.STATUS, str(status)
        return Attempt.REJECTED, str(status)

"""Security alerts: the guard's outputs turned into webhook posts (``sharing-guard alerts``).

:mod:`~sharing_guard.alerts.core` classifies records into alerts and computes the retry
schedule and signature (pure); :mod:`~sharing_guard.alerts.consumer` (Kafka),
:mod:`~sharing_guard.alerts.delivery` (httpx) and :mod:`~sharing_guard.alerts.web`
(health and metrics) are the adapters; :mod:`~sharing_guard.alerts.bootstrap` wires them.
"""

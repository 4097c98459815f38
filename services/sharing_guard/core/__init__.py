"""The pure policy core: no I/O, no clock reads, no logging, no Kafka.

``policy`` parses the policy document, ``state`` folds governance events into immutable
state, ``engine`` decides one transfer from explicit facts, and ``ledger`` combines them
with idempotency and quota accounting. The stream processor, ``sharing-guard replay``,
the benchmarks and the tests all drive this same code.
"""

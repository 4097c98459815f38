"""Files shipped verbatim inside exports: ``verify_export.py``, the standalone verifier.

It is deliberately independent of the rest of the package (standard library and
``cryptography`` only), so that a third party can read, audit and run it without our code.
"""

"""``sharing-guard orders ...``: the legal officers' command line, and the service itself.

Client commands (``register``, ``approve``, ``revoke``, ``list``, ``show``) talk to the
service over httpx; the URL and token come from ``--url``/``--token`` or the environment
(``SHARING_GUARD_ORDERS_URL``, ``SHARING_GUARD_ORDERS_TOKEN``; prefer the variable: a
command-line token is visible to other users of the machine). ``serve`` runs the service;
``token`` issues a token for an officer and prints only the hash entry to configure.

Exit status: 0 done; 1 other error; 2 invalid or too large a request (each field named);
3 service
unreachable; 4 not authenticated (401) or not allowed (403); 5 refused (409: four eyes,
revoked...); 6 no such order.
"""

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sharing_guard.contract.enums import DataCategory, OrderType

EXIT_OK, EXIT_ERROR, EXIT_INVALID, EXIT_UNREACHABLE, EXIT_AUTH, EXIT_REFUSED, EXIT_NOT_FOUND = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
)
DEFAULT_URL = "http://127.0.0.1:8090"
STATES = ("PENDING", "IN_FORCE", "EXPIRED", "REVOKED", "EXHAUSTED")
if TYPE_CHECKING:
    import httpx

ROLES = ("legal_officer", "security_reviewer", "administrator")


class CliError(Exception):
    """An error for the user, with the exit status to leave with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def add_orders_parser(commands: Any) -> None:
    """Add the ``orders`` command group to the main parser's sub-commands."""
    orders = commands.add_parser(
        "orders",
        help="law-enforcement orders: register, approve, revoke, list, show; serve the API",
        description="Law-enforcement orders (see docs/orders.md).",
    )
    sub = orders.add_subparsers(dest="orders_command", required=True)

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text
        )
        parser.add_argument(
            "--url",
            default=os.environ.get("SHARING_GUARD_ORDERS_URL", DEFAULT_URL),
            help="the order service (default: $SHARING_GUARD_ORDERS_URL or %(default)s)",
        )
        parser.add_argument(
            "--token",
            default=None,
            help="bearer token (default: $SHARING_GUARD_ORDERS_TOKEN; prefer the variable)",
        )
        parser.add_argument("--json", action="store_true", help="print the service's JSON")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
        return parser

    register = client("register", "register an order in your name (pending until approved)")
    register.add_argument("--order-ref", help="the order's reference (default: a new id)")
    register.add_argument("--type", required=True, choices=[t.value for t in OrderType])
    register.add_argument("--authority", required=True, help="the issuing court or body")
    register.add_argument("--jurisdiction", required=True, help="ISO 3166-1 alpha-2, e.g. CH")
    register.add_argument("--recipient", required=True, help="the receiving agency's id")
    register.add_argument(
        "--account", action="append", required=True, help="an account in scope (repeat)"
    )
    register.add_argument(
        "--category",
        action="append",
        required=True,
        choices=[c.value for c in DataCategory],
        help="a data category in scope (repeat)",
    )
    register.add_argument("--valid-from", required=True, help="RFC 3339, e.g. 2026-01-01T00:00Z")
    register.add_argument("--valid-until", required=True, help="RFC 3339")
    register.add_argument("--max-disclosures", type=int, help="most transfers (default: none)")

    approve = client("approve", "approve an order registered by another officer")
    approve.add_argument("order_ref")
    revoke = client("revoke", "revoke an order, with the reason")
    revoke.add_argument("order_ref")
    revoke.add_argument("--reason", required=True)
    listing = client("list", "list orders with their state")
    listing.add_argument("--state", choices=STATES, help="only orders in this state")
    show = client("show", "show one order with its disclosures")
    show.add_argument("order_ref")

    sub.add_parser(
        "serve",
        help="run the order service (configured by SHARING_GUARD_ORDERS_* variables)",
        description="Run the order service; see docs/orders.md for its settings.",
    )
    token = sub.add_parser(
        "token",
        help="issue a token for an officer; prints the token once",
        description="Issue a token: the token goes to stdout (hand it over securely); "
        "only its hash is stored, appended to --tokens-file.",
    )
    token.add_argument("--officer", required=True, help="the officer's id")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument(
        "--valid-days", type=float, default=90.0, help="days until it expires (more than 0)"
    )
    token.add_argument("--tokens-file", type=Path, required=True, help="the JSON tokens file")


def run_orders(args: argparse.Namespace) -> int:
    """Run one ``orders`` command; returns the exit status."""
    command = args.orders_command
    if command == "serve":
        from sharing_guard.orders.bootstrap import serve

        serve()
        return EXIT_OK
    try:
        if command == "token":
            return _issue_token(args)
        return _client_command(args)
    except CliError as exc:
        print(f"sharing-guard orders: {exc}", file=sys.stderr)
        return exc.status


def _issue_token(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from sharing_guard.codec import describe_validation_error
    from sharing_guard.orders.auth import (
        Role,
        TokenEntry,
        entries_json,
        load_entries,
        new_token,
        token_hash,
    )

    path: Path = args.tokens_file
    if not args.valid_days > 0:  # also refuses NaN
        raise CliError(
            f"--valid-days must be more than 0 (got {args.valid_days}): a token valid for "
            "no time would be refused at once",
            EXIT_INVALID,
        )
    try:
        entries = load_entries(path) if path.exists() else []
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}", EXIT_ERROR) from None
    token = new_token()
    try:
        entry = TokenEntry(
            officer_id=args.officer,
            role=Role(args.role),
            expires_at=datetime.now(UTC) + timedelta(days=args.valid_days),
            token_sha256=token_hash(token),
        )
    except (ValidationError, OverflowError) as exc:
        reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else exc
        raise CliError(f"cannot issue the token: {reason}", EXIT_INVALID) from None
    entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(entries_json(entries) + "\n", encoding="utf-8")
    path.chmod(0o600)
    print(token)
    return EXIT_OK


def _client_command(args: argparse.Namespace) -> int:
    import httpx

    token = args.token or os.environ.get("SHARING_GUARD_ORDERS_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    command = args.orders_command
    with httpx.Client(base_url=args.url, headers=headers, timeout=args.timeout) as http:
        if command == "register":
            body: dict[str, Any] = {
                "order_type": args.type,
                "authority": args.authority,
                "jurisdiction": args.jurisdiction,
                "recipient_id": args.recipient,
                "account_ids": args.account,
                "data_categories": args.category,
                "valid_from": args.valid_from,
                "valid_until": args.valid_until,
                "max_disclosures": args.max_disclosures,
            }
            if args.order_ref:
                body["order_ref"] = args.order_ref
            result = _call(http, "POST", "/orders", json=body)
        elif command == "approve":
            result = _call(http, "POST", f"/orders/{_quote(args.order_ref)}/approve")
        elif command == "revoke":
            result = _call(
                http,
                "POST",
                f"/orders/{_quote(args.order_ref)}/revoke",
                json={"reason": args.reason},
            )
        elif command == "list":
            params = {"state": args.state} if args.state else {}
            result = _call(http, "GET", "/orders", params=params)
        else:
            result = _call(http, "GET", f"/orders/{_quote(args.order_ref)}")
    if args.json:
        print(json.dumps(result, indent=2))
    elif isinstance(result, list):
        print(format_table(result))
    else:
        print(format_order(result))
    return EXIT_OK


def _quote(ref: str) -> str:
    from urllib.parse import quote

    return quote(ref, safe="")


def _call(http: "httpx.Client", method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    try:
        response = http.request(method, path, **kwargs)
    except httpx.ConnectError as exc:
        raise CliError(
            f"cannot reach the order service at {http.base_url} ({exc}); is it running? "
            "(set --url or SHARING_GUARD_ORDERS_URL)",
            EXIT_UNREACHABLE,
        ) from None
    except httpx.HTTPError as exc:
        raise CliError(
            f"request to {http.base_url} failed: {type(exc).__name__}: {exc}", EXIT_UNREACHABLE
        ) from None
    if response.is_success:
        return response.json()
    raise _error_for(response)


def _detail(response: "httpx.Response") -> Any:
    try:
        return response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text


def _error_for(response: "httpx.Response") -> CliError:
    code = response.status_code
    detail = _detail(response)
    if code == 401:
        return CliError(
            f"not authenticated: {detail} (give a valid token with --token or "
            "SHARING_GUARD_ORDERS_TOKEN)",
            EXIT_AUTH,
        )
    if code == 403:
        return CliError(f"not allowed: {detail}", EXIT_AUTH)
    if code == 409:
        return CliError(f"refused: {detail}", EXIT_REFUSED)
    if code == 404:
        return CliError(f"not found: {detail}", EXIT_NOT_FOUND)
    if code == 413:
        return CliError(f"too large: {detail}", EXIT_INVALID)
    if code == 400:
        return CliError(f"bad request: {detail}", EXIT_INVALID)
    if code == 422 and isinstance(detail, list):
        lines = [
            f"  {'.'.join(str(p) for p in item.get('loc', []) if p != 'body') or '<request>'}: "
            f"{item.get('msg', '')}"
            for item in detail
            if isinstance(item, dict)
        ]
        return CliError("invalid request:\n" + "\n".join(lines), EXIT_INVALID)
    return CliError(f"the service answered HTTP {code}: {detail}", EXIT_ERROR)


def format_order(order: dict[str, Any]) -> str:
    """One order for a person."""
    limit = order.get("max_disclosures")
    approved = "no"
    if order["approved_by"]:
        approved = f"by {order['approved_by']} at {order['approved_at']}"
    lines = [
        f"order {order['order_ref']}: {order['state']}",
        f"  type:         {order['order_type']} by {order['authority']} ({order['jurisdiction']})",
        f"  recipient:    {order['recipient_id']}",
        f"  scope:        {len(order['account_ids'])} account(s); "
        f"{', '.join(order['data_categories'])}",
        f"  valid:        {order['valid_from']} .. {order['valid_until']}",
        f"  registered:   by {order['registered_by']} at {order['registered_at']}",
        "  approved:     " + approved,
    ]
    if order.get("revoked_by"):
        lines.append(
            f"  revoked:      by {order['revoked_by']} at {order['revoked_at']}: "
            f"{order['revoke_reason']}"
        )
    lines.append(
        f"  disclosures:  {order['disclosure_count']}"
        + (f" of {limit}" if limit is not None else " (no limit)")
        + f"; refused attempts: {order['refused_count']}"
    )
    for item in order.get("disclosures") or []:
        lines.append(f"    {item['decided_at']}  {item['event_id']}")
    return "\n".join(lines)


def format_table(orders: list[dict[str, Any]]) -> str:
    """Orders as a table, one line each."""
    header = ("ORDER", "STATE", "TYPE", "AUTHORITY", "VALID UNTIL", "DISCLOSED", "APPROVED BY")
    rows = [header] + [
        (
            o["order_ref"],
            o["state"],
            o["order_type"],
            o["authority"],
            o["valid_until"],
            f"{o['disclosure_count']}/{o['max_disclosures'] if o['max_disclosures'] else '-'}",
            o["approved_by"] or "-",
        )
        for o in orders
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )

"""``eventcron history --changes``: the audit log of plans applied and reloads refused."""

from __future__ import annotations

import argparse
import json
from typing import Any

from eventcron.cli.common import ledger_only
from eventcron.cli.history import instance_label
from eventcron.cli.output import EXIT_OK, count, out
from eventcron.clock import from_ms, rfc3339
from eventcron.firing.plandiff import PlanChange
from eventcron.ledger import PlanRecord


def show_changes(args: argparse.Namespace, *, since: int | None, limit: int | None) -> int:
    """Print plan changes, newest first, from the ledger alone."""
    with ledger_only(args, from_invalid_file=True) as (ledger, _target):
        records = ledger.plan_log(since=since, limit=limit)
    items = [as_json(r) for r in records]
    if args.json:
        out(json.dumps(items, indent=2))
        return EXIT_OK
    if not items:
        out("No plan has been applied or refused yet.")
        return EXIT_OK
    for r, item in zip(records, items, strict=True):
        when = from_ms(r.at).strftime("%Y-%m-%d %H:%M:%S UTC")
        out(f"{when}  {r.outcome:<7}  {instance_label(r.instance)}  {r.file}"
            f"  {r.sha256[:8]}  {_summary(item)}")
    return EXIT_OK


def as_json(r: PlanRecord) -> dict[str, Any]:
    """Return the JSON object of one audit entry."""
    change = r.change or {}
    return {"at": rfc3339(from_ms(r.at)), "instance": r.instance, "file": r.file,
            "sha256": r.sha256, "outcome": r.outcome, "problems": r.problems,
            "added": change.get("added", []), "removed": change.get("removed", []),
            "changed": change.get("changed", {}), "retimed": change.get("retimed", []),
            "enabled": change.get("enabled", []), "disabled": change.get("disabled", []),
            "cancelled": change.get("cancelled", 0),
            # pending rows of users newly on the suppression list (absent in older entries)
            "suppressed": change.get("suppressed", 0)}


def _summary(item: dict[str, Any]) -> str:
    if item["outcome"] == "refused":
        return f"{count(item['problems'], 'problem')}; the previous plan kept running"
    parts = [f"+{sid}" for sid in item["added"]] + [f"-{sid}" for sid in item["removed"]]
    change = PlanChange(changed={k: tuple(v) for k, v in item["changed"].items()},
                        enabled=tuple(item["enabled"]), disabled=tuple(item["disabled"]))
    for sid in item["changed"]:
        verb, what = change.label(sid)
        parts.append({"changed": "~", "enabled": "enabled ", "disabled": "disabled "}[verb]
                     + what)
    if not parts:
        parts = ["no schedule changed"]
    if item["cancelled"]:
        parts.append(f"{count(item['cancelled'], 'pending event')} cancelled")
    if item["suppressed"]:
        parts.append(f"{count(item['suppressed'], 'pending event')} suppressed (opted out)")
    return "; ".join(parts)

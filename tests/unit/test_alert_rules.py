"""The shipped Prometheus alert rules name only metrics eventcron exports, and they work."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventcron.metrics import Metrics

RULES_DIR = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"
RULES = RULES_DIR / "eventcron.rules.yml"
RULE_TESTS = RULES_DIR / "eventcron.rules.test.yml"
# Series Prometheus itself makes for every target: not eventcron's to export.
PROMETHEUS_OWN = frozenset({"up"})
# PromQL words that look like names but are not series.
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and",
                      "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
WANTED = {"EventcronNoInstance", "EventcronEndpointPaused", "EventcronTokenExpiresSoon",
          "EventcronFinalFailures", "EventcronOccurrenceOverdue", "EventcronReloadRefused"}


def series_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects (functions, labels left out)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range and subquery durations
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", s):
        if m.group(2) is None and m.group(1).lower() not in KEYWORDS:
            names.add(m.group(1))
    return names


def exported_names() -> set[str]:
    """Return every series name a real ``Metrics().render()`` shows, with every suffix."""
    metrics = Metrics()
    # Labelled metrics show no series until they have one.
    metrics.set_next_fires({"s": 1.0})
    metrics.last_fire("s", 1.0)
    metrics.rows.labels("pending").set(0)
    names: set[str] = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                                   "_created")}
    for line in metrics.render().decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name, *(name + suffix for suffix in suffixes.get(kind, ()))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_name_finder_finds_names_and_only_names() -> None:
    expr = ('histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{x="y", le=~"1e3"}[5m]'
            ' offset 1h))) > 1e3 and on(instance) b_total - time() < 7 * 86400 unless c:d')
    assert series_names(expr) == {"a_bucket", "b_total", "c:d"}


def test_every_alert_expression_names_only_metrics_eventcron_exports() -> None:
    exported = exported_names()
    assert {"eventcron_delivery_lateness_seconds_bucket", "eventcron_deliveries_total",
            "eventcron_last_fire_timestamp_seconds"} <= exported
    found = rules()
    assert {rule["alert"] for rule in found} >= WANTED
    used: set[str] = set()
    for rule in found:
        names = series_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        unknown = names - exported - PROMETHEUS_OWN
        assert not unknown, f"{rule['alert']} uses {sorted(unknown)}, which eventcron does" \
                            " not export"
        used |= names
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert {"up", "eventcron_endpoint_paused", "eventcron_token_expiry_timestamp_seconds",
            "eventcron_next_fire_timestamp_seconds", "eventcron_reload_failures_total",
            "eventcron_deliveries_total"} <= used


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="needs promtool (Debian: apt-get install prometheus)")
def test_promtool_accepts_the_rules_and_their_examples_hold() -> None:
    for args in (["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]):
        result = subprocess.run(["promtool", *args], cwd=RULES_DIR, capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}" \
                                       f"{result.stderr}"

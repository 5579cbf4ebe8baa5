"""Data templates: the per-user fast path renders exactly what the general one does."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from eventcron.config.template import DataTemplate

FIXED = {"scheduled_for": "2026-12-01T08:00:00Z",
         "scheduled_for_local": "2026-12-01T09:00:00+01:00",
         "schedule_id": "s", "event_type": "a:b"}
TEMPLATE = DataTemplate.compile({
    "due": "${scheduled_for} / ${scheduled_for_local}",
    "who": "${app_user_id} ${user.id} ${user.app_user_id}",
    "tz": "${user.timezone}", "plan": "plan ${user.plan}!", "lit": "$${x}",
    "nested": {"n": "${user.name}", "k": [1, "${schedule_id}:${event_type}"]},
})


@given(st.text(), st.one_of(st.none(), st.text()), st.text(), st.text())
def test_the_fast_renderer_matches_render(user: str, tz: str | None, plan: str,
                                          name: str) -> None:
    fast = TEMPLATE.renderer(FIXED, ("plan", "name"))((user, tz, (plan, name)))
    values = {**FIXED, "app_user_id": user, "user.id": user, "user.app_user_id": user,
              "user.timezone": tz or "", "user.plan": plan, "user.name": name}
    assert fast == TEMPLATE.render(values)
    data = json.loads(fast)
    assert data["plan"] == f"plan {plan}!"
    assert data["lit"] == "${x}"


def test_a_constant_template_is_shared() -> None:
    template = DataTemplate.compile({"a": 1})
    assert template.renderer(FIXED, ())(("u", None, ())) == '{"a":1}'

"""Sessions: the touches a customer makes. Web and app activity (page and screen views)
forms a session until 30 minutes of inactivity; every other touch (an email click, a call, a
store visit, a chat) is a touch of its own channel. A session's channel is that of its first
event, and sessions follow the customer across devices."""

from __future__ import annotations

import ibis

from plait.core.settings import AnalyticsSettings


def is_touch(events: ibis.Table, rules: AnalyticsSettings) -> ibis.BooleanValue:
    """Whether an event is a touch: a page or screen view, a touch event (an email click,
    a call…), or any event on a touch channel (a purchase in a store)."""
    return (
        events.type.isin(rules.touch_types)
        | events.event.isin(rules.touch_events)
        | events.channel.isin(rules.touch_channels)
    )


def touch_rows(events: ibis.Table, rules: AnalyticsSettings) -> ibis.Table:
    """The touches among ``events``, narrowed to what sessions need: ``customer_id``,
    ``timestamp``, ``seq``, ``channel``, ``campaign`` and ``web`` (a page or screen view)."""
    on_touch_channel = ibis.coalesce(events.channel.isin(rules.touch_channels), False)
    touches = events.filter(is_touch(events, rules))  # a no-op when already filtered
    return touches.select(
        "customer_id",
        "timestamp",
        "seq",
        channel=ibis.coalesce(touches.channel, "Unassigned"),
        campaign=ibis.coalesce(touches.traffic_campaign, ""),
        web=touches.type.isin(rules.touch_types) & ~on_touch_channel,
    )


def sessions(touches: ibis.Table, rules: AnalyticsSettings) -> ibis.Table:
    """One row per session: ``customer_id``, ``started_at``, ``seq``, ``channel``,
    ``campaign`` and ``original_channel`` (the channel of the customer's first touch ever,
    found in the same sorted pass), from ``touch_rows``.

    A new session starts after ``session_timeout_minutes`` without a touch, when the kind of
    touch changes (web to a call, a call to a store visit…), and, if
    ``split_sessions_on_campaign``, when a web touch arrives from another campaign.
    """
    touches = touches.mutate(
        lane=ibis.ifelse(touches.web, "(web)", touches.channel),
        at=touches.timestamp.epoch_seconds(),
    )
    window = ibis.window(group_by=touches.customer_id, order_by=[touches.timestamp, touches.seq])
    gap = touches.at - touches.at.lag().over(window)
    starts = (
        gap.isnull()
        | (gap > rules.session_timeout_minutes * 60)
        | (touches.lane != touches.lane.lag().over(window))
    )
    if rules.split_sessions_on_campaign:
        starts |= touches.campaign != touches.campaign.lag().over(window)
    return (
        touches.mutate(starts=starts, original_channel=touches.channel.first().over(window))
        .filter(ibis._.starts)
        .select(
            "customer_id",
            "seq",
            "channel",
            "campaign",
            "original_channel",
            started_at=ibis._.timestamp,
        )
    )

"""Lifecycle stage of a customer, from what they did (HubSpot's stages, lower-cased)."""

from __future__ import annotations

STAGES = (
    "visitor",
    "subscriber",
    "lead",
    "marketing_qualified_lead",
    "sales_qualified_lead",
    "opportunity",
    "customer",
    "evangelist",
)


def lifecycle_stage(
    *, orders: int, qualified: bool, contactable: bool, stated: object = None
) -> str:
    """The furthest stage the evidence supports; a stage stated in traits (by a CRM) counts
    when it is further along, since stages only move forward."""
    if orders > 0:
        derived = "customer"
    elif qualified:
        derived = "sales_qualified_lead"
    elif contactable:
        derived = "lead"
    else:
        derived = "visitor"
    if isinstance(stated, str) and stated.lower() in STAGES:
        return max(derived, stated.lower(), key=STAGES.index)
    return derived

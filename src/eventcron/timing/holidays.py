"""Public holidays by region, from the ``holidays`` package (imported on first use).

A region is an ISO 3166-1 alpha-2 country code, optionally with a subdivision: ``DE``,
``DE-BY``. The calendars are the package's: a newer release of it brings new years and
corrections (``pip install -U holidays``), nothing here is a table of dates.
"""

from __future__ import annotations

import functools
from datetime import date
from typing import Any

from eventcron.problems import did_you_mean


@functools.cache
def _supported() -> dict[str, tuple[str, ...]]:
    # Loads every country's module (about 170 ms more): only for the suggestions of a
    # region that is not known; a known one is checked by _classes alone.
    import holidays  # noqa: PLC0415 - about 100 ms; only schedules with skip.holidays pay

    return {code: tuple(subs) for code, subs in holidays.list_supported_countries().items()
            if len(code) == 2}


@functools.cache
def _classes() -> dict[str, str]:
    """Map alpha-2 codes (aliases such as UK included) to the package's class names."""
    from holidays.registry import COUNTRIES  # noqa: PLC0415

    return {code: entry[0] for entry in COUNTRIES.values() for code in entry[1:]
            if len(code) == 2 and code.isupper()}


def _known(country: str, subdivision: str | None) -> bool:
    """Tell whether a region exists, loading the one country's module only."""
    name = _classes().get(country)
    if name is None:
        return False
    if subdivision is None:
        return True
    import holidays  # noqa: PLC0415

    return subdivision in getattr(holidays, name).subdivisions


@functools.cache
def _by_name() -> dict[str, str]:
    """Map country names as the package spells them (``germany``) to their codes."""
    from holidays.registry import COUNTRIES  # noqa: PLC0415

    return {module: entry[1] for module, entry in COUNTRIES.items()}


def version() -> str:
    """Return the version of the holiday calendars in use (the ``holidays`` package)."""
    from importlib.metadata import version as installed  # noqa: PLC0415

    return installed("holidays")


def split_region(region: str) -> tuple[str, str | None]:
    """Split ``DE-BY`` into ``("DE", "BY")`` and ``DE`` into ``("DE", None)``."""
    country, _, subdivision = region.partition("-")
    return country, subdivision or None


def check_region(region: str) -> str | None:
    """Return a problem sentence for a region the calendars do not know, or None."""
    country, subdivision = split_region(region.strip())
    if region.strip().endswith("-"):
        return (f"{region.strip()!r} has a '-' but no subdivision after it; write"
                f" {country!r} alone, or add the subdivision's code (as in 'DE-BY').")
    if _known(country, subdivision):
        return None
    supported = _supported()
    if country not in supported:
        upper = country.upper()
        by_name = _by_name()
        if upper in supported:
            hint = f" (did you mean {region.strip().upper()!r}?)"
        elif country.replace(" ", "_").lower() in by_name:
            hint = f" (did you mean {by_name[country.replace(' ', '_').lower()]!r}?)"
        else:
            hint = did_you_mean(upper, supported)
        return (f"unknown country {country!r}{hint}; use an ISO 3166 code such as 'DE',"
                " optionally with a subdivision ('DE-BY').")
    if subdivision is not None and subdivision not in supported[country]:
        subs = supported[country]
        hint = did_you_mean(subdivision, subs) or did_you_mean(subdivision.upper(), subs)
        shown = ", ".join(subs[:12]) + (f" and {len(subs) - 12} more" if len(subs) > 12 else "")
        known = f"; {country} has {shown}" if subs else f"; {country} has no subdivisions"
        return f"unknown subdivision {subdivision!r} of {country}{hint}{known}."
    return None


@functools.lru_cache(maxsize=1024)
def _calendar(region: str, year: int) -> Any:
    import holidays  # noqa: PLC0415

    country, subdivision = split_region(region.strip())  # as check_region reads it
    # Names in English whatever the locale: the package follows LANG, so a daemon under
    # systemd and `eventcron next` in a shell would otherwise record different reasons.
    return holidays.country_holidays(country, subdiv=subdivision, years=year,
                                     language="en_US")


@functools.lru_cache(maxsize=65536)
def holiday(region: str, day: date) -> str | None:
    """Return the name of the public holiday on ``day`` in ``region``, or None.

    ``region`` must have passed :func:`check_region`. Several holidays on one day are
    joined as the package joins them (``"A; B"``).
    """
    name = _calendar(region, day.year).get(day)
    return str(name) if name else None

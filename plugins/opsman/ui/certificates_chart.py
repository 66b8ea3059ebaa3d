"""The fleet timeline as inline SVG, rendered on the server (no JavaScript, readable in a screenshot).

One lane per foundation: a bar from today to its root CA's expiry (a diamond with the date), the
leaves expiring within its window (dots, red for the ones the rotation re-issues), its window as a
shaded band from today, and a vertical "today" line. Due and failed lanes get a red background.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from opsman.ui.certificates_rows import parse_time

WIDTH, LABEL_W, LANE_H, TOP, BOTTOM, RIGHT = 1200, 190, 54, 34, 30, 40
STATE_COLOURS = {
    "due": "#c62828",
    "failed": "#c62828",
    "running": "#1565c0",
    "rotated": "#2e7d32",
    "not_due": "#546e7a",
    "unknown": "#9e9e9e",
}


def _month_ticks(start: dt.datetime, end: dt.datetime, months: int) -> list[dt.datetime]:
    ticks, year, month = [], start.year, start.month
    while True:
        month += 1
        if month > 12:
            year, month = year + 1, 1
        tick = dt.datetime(year, month, 1, tzinfo=dt.UTC)
        if tick > end:
            return ticks
        if (month - 1) % months == 0:
            ticks.append(tick)


def render_timeline(rows: list[dict[str, Any]], now: dt.datetime) -> str:
    dates = [now + dt.timedelta(days=r["window_days"]) for r in rows]
    for r in rows:
        dates += [d for d in (parse_time(r["ca_expires_at"]),) if d]
        dates += [parse_time(c["valid_until"]) for c in r["leaves"]]
    start = now - dt.timedelta(days=30)
    end = max([now + dt.timedelta(days=365), *[d for d in dates if d]]) + dt.timedelta(days=45)
    span = (end - start).total_seconds()
    plot_w = WIDTH - LABEL_W - RIGHT

    def x(when: dt.datetime) -> float:
        return LABEL_W + max(0.0, min(1.0, (when - start).total_seconds() / span)) * plot_w

    height = TOP + LANE_H * max(1, len(rows)) + BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Root CA and leaf certificate expiry timeline" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">',
        "<title>Root CA and leaf certificate expiry, per foundation</title>",
    ]
    years = (end - start).days / 365
    for tick in _month_ticks(start, end, 1 if years < 1.5 else 3 if years < 4 else 6):
        tx = x(tick)
        out.append(
            f'<line x1="{tx:.1f}" y1="{TOP - 6}" x2="{tx:.1f}" y2="{height - BOTTOM}" stroke="#eceff1"/>'
        )
        out.append(
            f'<text x="{tx:.1f}" y="{height - 10}" text-anchor="middle" fill="#607d8b">{tick:%Y-%m}</text>'
        )
    for i, r in enumerate(rows):
        y0 = TOP + i * LANE_H
        mid = y0 + LANE_H / 2
        colour = STATE_COLOURS.get(r["state"], "#9e9e9e")
        lane_cls = "lane due" if r["highlight"] else "lane"
        out.append(f'<g class="{lane_cls}" data-foundation="{escape(r["foundation"])}">')
        if r["highlight"]:
            out.append(f'<rect x="0" y="{y0 + 2}" width="{WIDTH}" height="{LANE_H - 4}" fill="#ffebee"/>')
        window_end = now + dt.timedelta(days=r["window_days"])
        out.append(
            f'<rect class="window" x="{x(now):.1f}" y="{y0 + 8}" width="{x(window_end) - x(now):.1f}" '
            f'height="{LANE_H - 16}" fill="#fff3cd" stroke="#f0c36d" stroke-dasharray="3 2">'
            f"<title>window {escape(r['expires_within'])}: until {window_end:%Y-%m-%d}</title></rect>"
        )
        out.append(
            f'<text x="{x(window_end) - 4:.1f}" y="{y0 + 19}" text-anchor="end" fill="#8d6e00" font-size="10">'
            f"window {escape(r['expires_within'])}</text>"
        )
        out.append(
            f'<text x="8" y="{mid - 3:.1f}" font-weight="bold" fill="#263238">{escape(r["foundation"])}</text>'
        )
        out.append(
            f'<text x="8" y="{mid + 13:.1f}" fill="{colour}" font-weight="bold">{escape(r["state_label"].upper())}</text>'
        )
        ca_end = parse_time(r["ca_expires_at"])
        if ca_end:
            out.append(
                f'<line x1="{x(now):.1f}" y1="{mid:.1f}" x2="{x(ca_end):.1f}" y2="{mid:.1f}" stroke="{colour}" '
                f'stroke-width="6" stroke-linecap="round" opacity="0.75"/>'
            )
            cx = x(ca_end)
            out.append(
                f'<path class="ca" d="M{cx:.1f} {mid - 9:.1f} L{cx + 9:.1f} {mid:.1f} L{cx:.1f} {mid + 9:.1f} '
                f'L{cx - 9:.1f} {mid:.1f} Z" fill="{colour}"><title>root CA {escape(r["ca_guid"] or "")} expires '
                f"{ca_end:%Y-%m-%d}</title></path>"
            )
            anchor = "end" if cx > WIDTH - 230 else "start"
            lx = cx - 13 if anchor == "end" else cx + 13
            out.append(
                f'<text x="{lx:.1f}" y="{mid - 10:.1f}" text-anchor="{anchor}" fill="#263238">root CA '
                f"{escape((r['ca_guid'] or '?')[:12])} · {ca_end:%Y-%m-%d} ({r['days_left']} d)</text>"
            )
        for c in r["leaves"]:
            when = parse_time(c["valid_until"])
            fill = "#c62828" if c["rotated_by_ca_rotation"] else "#ff8f00"
            out.append(
                f'<circle class="leaf" cx="{x(when):.1f}" cy="{mid:.1f}" r="5" fill="{fill}" stroke="#fff">'
                f"<title>{escape(c['name'] or '')} expires {when:%Y-%m-%d}</title></circle>"
            )
        if r["leaves"]:
            first = parse_time(r["leaves"][0]["valid_until"])
            more = f" +{len(r['leaves']) - 1}" if len(r["leaves"]) > 1 else ""
            out.append(
                f'<text x="{x(first) + 8:.1f}" y="{mid + 17:.1f}" text-anchor="start" fill="#b71c1c" font-size="10">'
                f"{escape(r['leaves'][0]['name'] or '')} {first:%m-%d}{more}</text>"
            )
        out.append("</g>")
    tx = x(now)
    out.append(
        f'<line class="today" x1="{tx:.1f}" y1="{TOP - 10}" x2="{tx:.1f}" y2="{height - BOTTOM}" stroke="#1565c0" stroke-width="2"/>'
    )
    out.append(
        f'<text x="{tx:.1f}" y="{TOP - 14}" text-anchor="middle" fill="#1565c0" font-weight="bold">today {now:%Y-%m-%d}</text>'
    )
    out.append("</svg>")
    return "\n".join(out)

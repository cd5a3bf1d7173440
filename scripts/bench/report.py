#!/usr/bin/env python3
"""Turns scripts/bench.sh's figures (argv[1]: lines `NAME VALUE`, the baseline's under
`base.NAME`) into the performance table: each figure, its target, and its ratio to the reference
measured in the same run."""

import statistics
import sys

figures = {}
for line in open(sys.argv[1], encoding="utf-8"):
    name, _, value = line.strip().partition(" ")
    figures[name] = value


def number(name, base=False):
    value = figures.get(("base." if base else "") + name)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def median(prefix, base=False):
    tag = "base." if base else ""
    values = [float(v) for k, v in figures.items() if k.startswith(tag + prefix + ".") and v]
    return statistics.median(values) if values else None


def criterion_us(name, base=False):
    ns = number("criterion." + name, base)
    return None if ns is None else ns / 1000


def slowest_normalization(base=False):
    """The lowest MiB/s of the normalize_bytes group, and its case."""
    tag = "base." if base else ""
    rates = []
    for key, value in figures.items():
        if key.startswith(tag + "bytes.normalize_bytes/"):
            case = key[len(tag + "bytes."):]
            ns = number("criterion." + case, base)
            if ns:
                name = case.split("/", 1)[1].rsplit("_(", 1)[0]
                rates.append((float(value) / (ns / 1e9) / 2**20, name))
    return min(rates) if rates else (None, None)


BATCHED_STEP = "state_step/checkout_activity,_batches_of_1000"


def state_step_us(base=False):
    """µs per event of the batched state step; a baseline without that bench: its one write per
    event, which is how that build's processor wrote."""
    batch = criterion_us(BATCHED_STEP, base)
    if batch is not None:
        return batch / 1000
    return criterion_us("state_step/checkout_activity", base) if base else None


state_step_note = (" (one write per event)"
                   if "base.commit" in figures and criterion_us(BATCHED_STEP, True) is None else "")


def processor_rate(base=False):
    records, cpu = number("processor.records", base), number("processor.cpu_s", base)
    return records / cpu if records and cpu else None


def fmt(value, unit="", digits=1):
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}{unit}"
    return f"{value:,.{digits}f}{unit}"


def ratio(value, reference, higher_is_better):
    """How many times better than the reference (> 1 is better)."""
    if value is None or reference in (None, 0) or value == 0:
        return "—"
    return f"{(value / reference if higher_is_better else reference / value):.2f}×"


has_base = "base.commit" in figures
slow, slow_case = slowest_normalization()
slow_base, _ = slowest_normalization(True)
rows = [
    # (path, measured, target, reference, ratio)
    ("ingress: verified + acknowledged requests/s, 5 KB Shopify checkout, 64 connections",
     fmt(number("ingress.rps"), digits=0), "≥ 0.9 × plain producer",
     f"plain producer {fmt(number('plain.rps'), digits=0)} records/s",
     ratio(number("ingress.rps"), number("plain.rps"), True)),
    ("ingress: CPU per request (daemon process)", fmt(number("ingress.cpu_us"), " µs"), "≤ 12 µs",
     f"plain producer {fmt(number('plain.cpu_us'), ' µs')} per record",
     ratio(number("ingress.cpu_us"), number("plain.cpu_us"), False)),
    ("ingress hot path: instructions per request (callgrind)",
     fmt(number("instructions.ingress"), digits=0), "—",
     f"baseline {fmt(number('instructions.ingress', True), digits=0)}",
     ratio(number("instructions.ingress"), number("instructions.ingress", True), False)),
    ("normalize a Shopify checkout", fmt(criterion_us("normalize_events/shopify/checkouts_create"), " µs"),
     "≤ 8 µs", f"baseline {fmt(criterion_us('normalize_events/shopify/checkouts_create', True), ' µs')}",
     ratio(criterion_us("normalize_events/shopify/checkouts_create"),
           criterion_us("normalize_events/shopify/checkouts_create", True), False)),
    (f"normalize: slowest fixture ({slow_case or '—'})", fmt(slow, " MiB/s"), "≥ 300 MiB/s",
     f"baseline {fmt(slow_base, ' MiB/s')}", ratio(slow, slow_base, True)),
    ("normalize a Shopify checkout: instructions (callgrind)",
     fmt(number("instructions.normalize"), digits=0), "—",
     f"baseline {fmt(number('instructions.normalize', True), digits=0)}",
     ratio(number("instructions.normalize"), number("instructions.normalize", True), False)),
    ("processor state step, per event, written 1,000 at a time as the processor writes them",
     fmt(state_step_us(), " µs"), "≤ 5 µs", f"baseline {fmt(state_step_us(True), ' µs')}{state_step_note}",
     ratio(state_step_us(), state_step_us(True), False)),
    ("processor state step, one write per event", fmt(criterion_us("state_step/checkout_activity"), " µs"), "—",
     f"baseline {fmt(criterion_us('state_step/checkout_activity', True), ' µs')}",
     ratio(criterion_us("state_step/checkout_activity"), criterion_us("state_step/checkout_activity", True), False)),
    ("processor role end to end: events per CPU-second", fmt(processor_rate(), digits=0), "≥ 100,000",
     f"baseline {fmt(processor_rate(True), digits=0)}", ratio(processor_rate(), processor_rate(True), True)),
    (f"fire {fmt(number('state.carts') or 1e6, digits=0)} due timers", fmt(number("timers.fire_s"), " s"), "≤ 5 s",
     f"baseline {fmt(number('timers.fire_s', True), ' s')}",
     ratio(number("timers.fire_s"), number("timers.fire_s", True), False)),
    ("deliveries/s to a receiver on loopback answering 200", fmt(median("delivery.per_s"), digits=0), "≥ 20,000",
     f"baseline {fmt(median('delivery.per_s', True), digits=0)}",
     ratio(median("delivery.per_s"), median("delivery.per_s", True), True)),
    ("CPU per delivery (bench process: delivery role + receiver + producer)", fmt(median("delivery.cpu_us"), " µs"),
     "≤ 50 µs", f"baseline {fmt(median('delivery.cpu_us', True), ' µs')}",
     ratio(median("delivery.cpu_us"), median("delivery.cpu_us", True), False)),
    ("disk per tracked cart", fmt(number("state.bytes_per_cart"), " B", 0), "≤ 300 B",
     f"baseline {fmt(number('state.bytes_per_cart', True), ' B', 0)}",
     ratio(number("state.bytes_per_cart"), number("state.bytes_per_cart", True), False)),
    ("shipped binary (stripped)", fmt((number("binary.stripped_bytes") or 0) / 1e6, " MB"), "—",
     f"unstripped release build {fmt((number('binary.release_bytes') or 0) / 1e6, ' MB')}", "—"),
]

print(f"`scripts/bench.sh` at {figures.get('commit', '?')}"
      + (f", baseline {figures['base.commit']}" if has_base else ", no baseline")
      + "; ratio: how many times better than the reference (> 1 is better)\n")
print("| path | measured | target | reference (same run) | ratio |")
print("|---|---|---|---|---|")
for row in rows:
    print("| " + " | ".join(row) + " |")

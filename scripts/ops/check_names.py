"""Checks that the dashboard and the alert rules use only real metrics, with real labels.

    python3 scripts/ops/check_names.py docs/metrics.md DASHBOARD.json RULES.yaml

Real means: listed in docs/metrics.md (which a unit test keeps equal to the code's list). Every
dashboard query must also parse as PromQL (promtool).
"""

import json
import re
import subprocess
import sys
import tempfile

import yaml

# Labels Prometheus or Kubernetes service discovery add to every series.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint"}


def documented(path):
    metrics = {}
    for line in open(path, encoding="utf-8"):
        m = re.match(r"\|\s*`(cartstream_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|", line)
        if m:
            labels = set(re.findall(r"(?:^|\),|;)\s*`([a-z_]+)`", m.group(3).strip()))
            metrics[m.group(1)] = (m.group(2), labels)
    if len(metrics) < 10:
        sys.exit(f"{path}: found only {len(metrics)} metrics in its table; is the format changed?")
    return metrics


def check(where, expr, known, problems):
    for m in re.finditer(r"\b(cartstream_[a-z0-9_]+)\s*(\{[^}]*\})?", expr):
        name, selector = m.group(1), m.group(2) or ""
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in known:
            kind, labels = known[name]
            if kind == "histogram":
                problems.append(f"{where}: histogram {name} used without _bucket/_sum/_count")
        elif base in known and known[base][0] == "histogram":
            kind, labels = known[base]
            if name.endswith("_bucket"):
                labels = labels | {"le"}
        else:
            problems.append(f"{where}: unknown metric {name}")
            continue
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", selector):
            if label not in labels and label not in TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {label!r}")
    if "cartstream_" not in expr and "up{" not in expr:
        problems.append(f"{where}: uses no cartstream metric: {expr}")


def dashboard_shape(dashboard):
    """What Grafana needs to import the dashboard and place its panels."""
    found = []
    for key in ("uid", "title", "schemaVersion", "panels"):
        if not dashboard.get(key):
            found.append(f"dashboard: no {key}")
    variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    if "datasource" not in variables:
        found.append("dashboard: no datasource variable")
    ids = set()
    for panel in dashboard.get("panels", []):
        grid = panel.get("gridPos", {})
        if panel.get("id") in ids:
            found.append(f"dashboard: duplicate panel id {panel.get('id')}")
        ids.add(panel.get("id"))
        if not {"h", "w", "x", "y"} <= set(grid) or grid["x"] + grid["w"] > 24:
            found.append(f"dashboard panel {panel.get('title')!r}: bad gridPos {grid}")
        if panel.get("type") != "row":
            if panel.get("datasource", {}).get("uid") != "${datasource}":
                found.append(f"dashboard panel {panel.get('title')!r}: not on the datasource variable")
            if not panel.get("targets"):
                found.append(f"dashboard panel {panel.get('title')!r}: no queries")
    return found


def main():
    docs, dashboard_path, rules_path = sys.argv[1:4]
    known = documented(docs)
    problems = []
    used = set()

    dashboard = json.load(open(dashboard_path, encoding="utf-8"))
    queries = []
    def walk(panels):
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                queries.append((f"dashboard panel {panel.get('title')!r}", target["expr"]))
    walk(dashboard.get("panels", []))
    problems.extend(dashboard_shape(dashboard))
    if not queries:
        problems.append(f"{dashboard_path}: no queries")
    for where, expr in queries:
        check(where, expr, known, problems)
        used.update(re.findall(r"cartstream_[a-z0-9_]+", expr))

    rules = yaml.safe_load(open(rules_path, encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            check(f"alert {rule.get('alert') or rule.get('record')}", rule["expr"], known, problems)
            used.update(re.findall(r"cartstream_[a-z0-9_]+", rule["expr"]))

    # Every dashboard query must be valid PromQL: promtool parses them as recording rules.
    substitutions = {"$__rate_interval": "5m", "$__interval": "1m", "$namespace": ".*", "$pod": ".*"}
    recording = []
    for i, (_, expr) in enumerate(queries):
        for old, new in substitutions.items():
            expr = expr.replace(old, new)
        recording.append({"record": f"dashboard:query{i}", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}, f)
        f.flush()
        result = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        if result.returncode != 0:
            problems.append("dashboard queries are not valid PromQL:\n" + result.stdout + result.stderr)

    bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    unused = sorted(set(known) - bases)
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{len(queries)} dashboard queries and the alert rules use {len(bases)} known metrics")
    if unused:
        print("not shown anywhere: " + ", ".join(unused))


if __name__ == "__main__":
    main()

"""Writes the Grafana dashboard helm/cartstream/dashboards/cartstream.json.

    python3 scripts/ops/dashboard.py > helm/cartstream/dashboards/cartstream.json

Edit the panels here, regenerate, and commit both; scripts/check-ops.sh fails when they differ.
Metric names and labels: docs/metrics.md.
"""

import json

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "[$__rate_interval]"


def sel(extra=""):
    """The series selector every query carries: the dashboard's namespace and pod variables."""
    inner = 'namespace=~"$namespace", pod=~"$pod"'
    return "{" + inner + (", " + extra if extra else "") + "}"


def rate(metric, by="", extra=""):
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({metric}{sel(extra)}{RATE}))"


def gauge(metric, by=""):
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}({metric}{sel()})"


def quantile(q, histogram, by=""):
    labels = "le" + (f", {by}" if by else "")
    return f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket{sel()}{RATE})))"


class Layout:
    def __init__(self):
        self.panels = []
        self.y = 0

    def row(self, title):
        self.panels.append({"type": "row", "title": title, "id": len(self.panels) + 1,
                            "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1

    def line(self, *panels):
        width = 24 // len(panels)
        for i, (title, unit, targets, *options) in enumerate(panels):
            options = options[0] if options else {}
            self.panels.append({
                "type": "timeseries", "title": title, "id": len(self.panels) + 1,
                "description": options.get("description", ""),
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": width, "x": i * width, "y": self.y},
                "fieldConfig": {"defaults": {"unit": unit, "custom": {
                    "fillOpacity": 10,
                    "stacking": {"mode": "normal" if options.get("stack") else "none"}}},
                    "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                            "tooltip": {"mode": "multi"}},
                "targets": [{"refId": chr(65 + n), "expr": expr, "legendFormat": legend,
                             "datasource": DATASOURCE}
                            for n, (expr, legend) in enumerate(targets)],
            })
        self.y += 8


def dashboard():
    d = Layout()
    stack = {"stack": True}
    d.row("Ingress")
    d.line(
        ("Accepted webhooks by provider", "reqps",
         [(rate("cartstream_ingress_requests_total", "provider", 'status="200"'), "{{provider}}")], stack),
        ("Requests by status", "reqps",
         [(rate("cartstream_ingress_requests_total", "status"), "{{status}}")], stack),
        ("Request latency by provider", "s",
         [(quantile(0.99, "cartstream_ingress_request_duration_seconds", "provider"), "p99 {{provider}}"),
          (quantile(0.5, "cartstream_ingress_request_duration_seconds"), "p50 all")]),
    )
    d.line(
        ("Signature failures by provider", "reqps",
         [(rate("cartstream_ingress_signature_failures_total", "provider"), "{{provider}}")],
         {"description": "Includes unknown tenants (indistinguishable on purpose)."}),
        ("In-flight requests", "short",
         [(gauge("cartstream_ingress_in_flight_requests", "pod"), "{{pod}}")]),
        ("Body size p50 / p99", "bytes",
         [(quantile(0.5, "cartstream_ingress_body_size_bytes"), "p50"),
          (quantile(0.99, "cartstream_ingress_body_size_bytes"), "p99")]),
    )
    d.row("Kafka producer")
    d.line(
        ("Kafka ack latency", "s",
         [(quantile(0.5, "cartstream_kafka_ack_duration_seconds"), "p50"),
          (quantile(0.99, "cartstream_kafka_ack_duration_seconds"), "p99")]),
        ("Produce failures by reason", "ops",
         [(rate("cartstream_kafka_produce_failures_total", "reason"), "{{reason}}")]),
        ("Producer queue", "short",
         [(gauge("cartstream_kafka_producer_queue_messages", "pod"), "{{pod}}")]),
    )
    d.row("Processor")
    d.line(
        ("Consumer lag (records)", "short",
         [(gauge("cartstream_processor_consumer_lag_records", "pod"), "{{pod}}")]),
        ("Events by bucket", "ops",
         [(rate("cartstream_processor_events_total", "bucket"), "{{bucket}}")], stack),
        ("Duplicates, invalid records, platform tests", "ops",
         [(rate("cartstream_processor_duplicates_total"), "duplicates"),
          (rate("cartstream_processor_invalid_records_total", "reason"), "invalid {{reason}}"),
          (rate("cartstream_processor_test_deliveries_total", "provider"), "test {{provider}}")]),
    )
    d.line(
        ("Carts by state", "short",
         [(gauge("cartstream_state_carts", "state"), "{{state}}")], stack),
        ("Timers pending / fired", "short",
         [(gauge("cartstream_processor_timers_pending"), "pending"),
          (rate("cartstream_processor_timers_fired_total"), "fired/s")]),
        ("Transitions per minute", "short",
         [("60 * " + rate("cartstream_processor_transitions_total", "to"), "{{to}}")], stack),
    )
    d.line(
        ("Outbox records (Kafka away?)", "short",
         [(gauge("cartstream_processor_outbox_records", "pod"), "{{pod}}")]),
        ("Assigned partitions", "short",
         [(gauge("cartstream_processor_assigned_partitions", "pod"), "{{pod}}")]),
        ("State write latency", "s",
         [(quantile(0.99, "cartstream_state_write_duration_seconds"), "p99"),
          (quantile(0.5, "cartstream_state_write_duration_seconds"), "p50")]),
    )
    d.row("Delivery")
    d.line(
        ("Delivery outcomes", "ops",
         [(rate("cartstream_delivery_outcomes_total", "outcome"), "{{outcome}}")], stack),
        ("Attempts by status class", "ops",
         [(rate("cartstream_delivery_attempts_total", "status_class"), "{{status_class}}")], stack),
        ("Delivery request latency", "s",
         [(quantile(0.5, "cartstream_delivery_request_duration_seconds"), "p50"),
          (quantile(0.99, "cartstream_delivery_request_duration_seconds"), "p99")]),
    )
    d.line(
        ("Pending retries and in-flight requests", "short",
         [(gauge("cartstream_delivery_pending_retries"), "pending retries"),
          (gauge("cartstream_delivery_in_flight_requests"), "in flight"),
          (gauge("cartstream_delivery_outbox_records"), "outcomes waiting for Kafka")]),
        ("Dead-lettered per minute", "short",
         [("60 * " + rate("cartstream_delivery_dead_lettered_total"), "dead-lettered")]),
        ("Open circuits / disabled endpoints", "short",
         [(gauge("cartstream_delivery_open_circuits"), "open circuits"),
          (gauge("cartstream_delivery_disabled_endpoints"), "disabled endpoints")]),
    )
    d.line(
        ("Delivery consumer lag (records)", "short",
         [(gauge("cartstream_delivery_consumer_lag_records", "pod"), "{{pod}}")]),
        ("State volume stalled (1 = full or failing)", "short",
         [(gauge("cartstream_state_volume_stalled", "pod, role"), "{{pod}} {{role}}")]),
        ("Runtime tasks", "short",
         [(gauge("cartstream_runtime_tasks", "pod"), "{{pod}}")]),
    )

    def variable(name, label, query):
        return {"name": name, "type": "query", "label": label, "datasource": DATASOURCE,
                "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "current": {},
                "query": {"query": query, "refId": name}, "definition": query}

    return {
        "title": "cartstream", "uid": "cartstream", "tags": ["cartstream"], "timezone": "utc",
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "description": "cartstream: ingress, Kafka producer, processor and delivery. Metrics: docs/metrics.md.",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            variable("namespace", "Namespace", "label_values(cartstream_kafka_producer_queue_messages, namespace)"),
            variable("pod", "Pod", 'label_values(cartstream_kafka_producer_queue_messages{namespace=~"$namespace"}, pod)'),
        ]},
        "panels": d.panels,
    }


if __name__ == "__main__":
    print(json.dumps(dashboard(), indent=2))

"""Lints and renders the Helm chart with several value sets and checks what comes out.

    python3 scripts/ops/check_chart.py helm/cartstream path/to/cartstream

For each value set: `helm lint --strict`, an offline render (Helm's own Go library, through
helm-python-sdk), every manifest validated against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors), the expected workloads present or absent, probes, security
context and resources on every container, the rendered cartstream.toml and tenants.toml
accepted by the daemon's own `check-config`, and the processor's static-membership shell command
run for real (against `check-config`). Rendering without kafka.brokers must fail.
"""

import os
import subprocess
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import yaml

K8S_VERSION = "1.30.0"
BROKERS = "kafka-0.kafka.data.svc:9092,kafka-1.kafka.data.svc:9092"
TENANTS = """
[[tenant]]
id = "acme"
inactivity_window = "15m"

  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = { env = "ACME_SHOPIFY_SECRET" }

  [[tenant.integration]]
  provider = "standard"
  integration_key = "int_acme_standard_5f2c9e1b"
  secret = { file = "/run/secrets/cartstream/tenants/acme-standard" }
"""
SECRET_VALUES = {
    "tenants": TENANTS,
    "secretEnv": [{"name": "ACME_SHOPIFY_SECRET", "secretName": "cartstream-tenants", "key": "acme-shopify"}],
    "secretFiles": [{"secretName": "cartstream-tenants", "mountPath": "/run/secrets/cartstream/tenants"}],
}
ROLES = ("ingress", "processor", "delivery")
MONITORING = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
              "grafanaDashboard": {"enabled": True}}

# name → (values, roles expected)
VALUE_SETS = {
    "required values only": ({"kafka": {"brokers": BROKERS}}, set(ROLES)),
    "monitoring and secrets": (
        {"kafka": {"brokers": BROKERS, "topicPrefix": "shop"}, **MONITORING, **SECRET_VALUES,
         "delivery": {"adminToken": {"secretName": "cartstream-admin", "key": "token"}},
         "config": {"kafka": {"producer": {"linger.ms": "10"}, "partitions": 24},
                    "processor": {"consumer": {"session.timeout.ms": "45000"}, "retention": "3d"},
                    "ingress": {"tenant_rate_limit_per_second": 50}}},
        set(ROLES)),
    "ingress only, fixed replicas": (
        {"kafka": {"brokers": BROKERS}, "processor": {"enabled": False}, "delivery": {"enabled": False},
         "ingress": {"autoscaling": {"enabled": False}, "podDisruptionBudget": {"enabled": False}}},
        {"ingress"}),
    "processor only, no static membership": (
        {"kafka": {"brokers": BROKERS}, "ingress": {"enabled": False}, "delivery": {"enabled": False},
         "processor": {"staticMembership": False, "persistence": {"storageClassName": "fast-ssd"}}},
        {"processor"}),
    "delivery only": (
        {"kafka": {"brokers": BROKERS}, "ingress": {"enabled": False}, "processor": {"enabled": False},
         **MONITORING},
        {"delivery"}),
    "network policy with admin peers": (
        {"kafka": {"brokers": BROKERS}, **MONITORING,
         "networkPolicy": {"admin": {"from": [
             {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
             {"ipBlock": {"cidr": "10.0.0.0/16"}}]}},
         "processor": {"adminToken": {"secretName": "cartstream-admin", "key": "token"}}},
        set(ROLES)),
    "no network policy": (
        {"kafka": {"brokers": BROKERS}, "networkPolicy": {"enabled": False}},
        set(ROLES)),
    "nothing enabled": (
        {"kafka": {"brokers": BROKERS}, "ingress": {"enabled": False}, "processor": {"enabled": False},
         "delivery": {"enabled": False}},
        set()),
}
# Kinds the Kubernetes schemas do not know (Prometheus Operator CRDs), checked by hand below.
CRDS = {"ServiceMonitor", "PrometheusRule"}

problems = []


def problem(message):
    problems.append(message)
    print(f"PROBLEM: {message}", file=sys.stderr)


def render(chart, values):
    out = chart.render(values, name="shop", namespace="commerce", is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc))
    return docs


def check_container(where, pod_spec):
    for c in pod_spec["containers"]:
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            got = c.get(probe, {}).get("httpGet", {})
            if got.get("path") != path or got.get("port") != "admin":
                problem(f"{where}: {probe} is not GET {path} on the admin port: {got}")
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation") is not False:
            problem(f"{where}: container security context not locked down: {sc}")
        if not c.get("resources", {}).get("requests"):
            problem(f"{where}: no resource requests")
        for env in c.get("env", []):
            if "value" in env and any(s in env["name"].upper() for s in ("SECRET", "TOKEN", "PASSWORD")):
                problem(f"{where}: {env['name']} carries a literal value instead of a secretKeyRef")
    if not pod_spec.get("securityContext", {}).get("runAsNonRoot"):
        problem(f"{where}: pod does not run as non-root")


def check_config(where, docs, binary, values):
    configmaps = [d for _, d in docs if d["kind"] == "ConfigMap" and "cartstream.toml" in d.get("data", {})]
    if len(configmaps) != 1:
        problem(f"{where}: expected one config ConfigMap, got {len(configmaps)}")
        return
    data = configmaps[0]["data"]
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "cartstream.toml")
        with open(config, "w") as f:
            f.write(data["cartstream.toml"])
            # What a processor pod with static membership appends.
            f.write('"group.instance.id" = "shop-cartstream-processor-0"\n')
        with open(os.path.join(tmp, "tenants.toml"), "w") as f:
            f.write(data["tenants.toml"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARTSTREAM__")}
        env["CARTSTREAM__TENANTS__FILE"] = os.path.join(tmp, "tenants.toml")
        if "{ env = " in data["tenants.toml"]:
            env["ACME_SHOPIFY_SECRET"] = "acme-shopify-test-secret"
        if "{ file = " in data["tenants.toml"]:
            # The mounted Secret's path, redirected to a scratch file for the check.
            secret = os.path.join(tmp, "acme-standard")
            with open(secret, "w") as f:
                f.write("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
            with open(env["CARTSTREAM__TENANTS__FILE"], "w") as f:
                f.write(data["tenants.toml"].replace("/run/secrets/cartstream/tenants/acme-standard", secret))
        result = subprocess.run([binary, "check-config", "--config", config], env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            problem(f"{where}: the daemon refuses the rendered configuration:\n{data['cartstream.toml']}\n"
                    f"{result.stdout}{result.stderr}")
        brokers = values["kafka"]["brokers"]
        if f'brokers = "{brokers}"' not in data["cartstream.toml"]:
            problem(f"{where}: kafka.brokers not in the rendered configuration")


def check_static_membership(where, statefulset, docs, binary, values):
    """Runs the processor container's shell command, with its paths moved to a scratch folder
    and `cartstream processor` replaced by `check-config`, and checks the result."""
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    static = values.get("processor", {}).get("staticMembership", True)
    if not static:
        if container.get("command") or container["args"][0] != "processor":
            problem(f"{where}: processor without static membership should run `processor` directly")
        return
    if container.get("command") != ["/bin/sh", "-c"] or len(container["args"]) != 1:
        problem(f"{where}: processor with static membership should run a shell command")
        return
    data = next(d["data"] for _, d in docs if d["kind"] == "ConfigMap" and "cartstream.toml" in d.get("data", {}))
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "mounted.toml"), "w") as f:
            f.write(data["cartstream.toml"])
        with open(os.path.join(tmp, "tenants.toml"), "w") as f:
            f.write("")
        script = container["args"][0]
        for old, new in (("/etc/cartstream/cartstream.toml", f"{tmp}/mounted.toml"),
                         ("/tmp/cartstream.toml", f"{tmp}/cartstream.toml"),
                         ("exec cartstream processor", f"exec {binary} check-config")):
            if old not in script:
                problem(f"{where}: the processor command lacks {old!r}: {script}")
                return
            script = script.replace(old, new)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARTSTREAM__")}
        env.update(POD_NAME="shop-cartstream-processor-2", CARTSTREAM__TENANTS__FILE=f"{tmp}/tenants.toml")
        result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            problem(f"{where}: the processor command fails: {result.stdout}{result.stderr}")
        written = open(os.path.join(tmp, "cartstream.toml")).read()
        if not written.rstrip().endswith('"group.instance.id" = "shop-cartstream-processor-2"'):
            problem(f"{where}: the processor command did not append its group.instance.id:\n{written}")


def check_network_policies(where, policies, values, roles):
    """One policy per role when enabled: Ingress only; the webhook port open to all on the
    ingress pods; the admin port only from networkPolicy.admin.from, never from everyone."""
    settings = values.get("networkPolicy", {})
    if not settings.get("enabled", True):
        if policies:
            problem(f"{where}: networkPolicy.enabled is false but {len(policies)} NetworkPolicies rendered")
        return
    admin_from = settings.get("admin", {}).get("from", [])
    by_role = {p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component"): p for p in policies}
    if set(by_role) != roles or len(policies) != len(roles):
        problem(f"{where}: NetworkPolicies for {sorted(by_role)}, expected {sorted(roles)}")
    for role, policy in by_role.items():
        spec = policy["spec"]
        if spec.get("policyTypes") != ["Ingress"]:
            problem(f"{where} {role}: NetworkPolicy policyTypes {spec.get('policyTypes')}, expected [Ingress]")
        open_ports, admin_peers = set(), None
        for rule in spec.get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if not ports:
                problem(f"{where} {role}: a NetworkPolicy rule admits every port: {rule}")
            if rule.get("from"):
                if ports != {9090}:
                    problem(f"{where} {role}: a rule with peers is not for the admin port alone: {rule}")
                admin_peers = rule["from"]
            else:
                open_ports |= ports
        expected_open = {8080} if role == "ingress" else set()
        if open_ports != expected_open:
            problem(f"{where} {role}: ports open to everyone {sorted(open_ports)}, expected {sorted(expected_open)}")
        if (admin_peers or []) != admin_from:
            problem(f"{where} {role}: admin port peers {admin_peers}, expected networkPolicy.admin.from {admin_from}")


def check_set(chart, chart_dir, binary, name, values, roles):
    where = f"[{name}]"
    lint = helm.lint(chart_dir, values, strict=True, namespace="commerce", kube_version="v" + K8S_VERSION)
    for m in lint.get("messages", []):
        if m["severity"] >= 2:
            problem(f"{where} helm lint: {m['path']}: {m['error']}")
    for e in lint.get("errors") or []:
        problem(f"{where} helm lint: {e}")
    docs = render(chart, values)
    kinds = {}
    for path, doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
        if doc["kind"] in CRDS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problem(f"{where} {path}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problem(f"{where} {path}: no Kubernetes schema for {doc['kind']}: {e}")

    workloads = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
                 for k in ("Deployment", "StatefulSet") for d in kinds.get(k, [])}
    if set(workloads) != roles:
        problem(f"{where}: workloads {sorted(workloads)}, expected {sorted(roles)}")
    for role, w in workloads.items():
        spec = w["spec"]
        check_container(f"{where} {role}", spec["template"]["spec"])
        token = values.get(role, {}).get("adminToken", {}).get("secretName")
        env = {e["name"]: e for e in spec["template"]["spec"]["containers"][0].get("env", [])}
        got = env.get("CARTSTREAM__ADMIN__TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name")
        if got != token:
            problem(f"{where} {role}: admin token from Secret {got!r}, expected {token!r}")
        expected = "Deployment" if role == "ingress" else "StatefulSet"
        if w["kind"] != expected:
            problem(f"{where} {role}: a {w['kind']}, expected a {expected}")
        if expected == "StatefulSet":
            claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])]
            mounts = [m["mountPath"] for m in spec["template"]["spec"]["containers"][0]["volumeMounts"]]
            if claims != ["state"] or f"/var/lib/cartstream/{role}" not in mounts:
                problem(f"{where} {role}: no persistent state volume ({claims}, {mounts})")
            services = [s for s in kinds.get("Service", []) if s["metadata"]["name"] == spec["serviceName"]]
            if not services or services[0]["spec"].get("clusterIP") != "None":
                problem(f"{where} {role}: no headless Service {spec['serviceName']}")
    check_network_policies(where, kinds.get("NetworkPolicy", []), values, roles)
    if "ingress" in roles:
        for service in kinds.get("Service", []):
            ports = {p["name"] for p in service["spec"]["ports"]}
            if "http" in ports and "admin" in ports:
                problem(f"{where}: the webhook Service {service['metadata']['name']} exposes the admin port")
        hpa = values.get("ingress", {}).get("autoscaling", {}).get("enabled", True)
        if bool(kinds.get("HorizontalPodAutoscaler")) != hpa:
            problem(f"{where}: HorizontalPodAutoscaler present: {bool(kinds.get('HorizontalPodAutoscaler'))}")
    for rule in kinds.get("PrometheusRule", []):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump(rule["spec"], f)
            f.flush()
            result = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
            if result.returncode != 0:
                problem(f"{where}: the rendered PrometheusRule does not check: {result.stdout}{result.stderr}")
    for monitor in kinds.get("ServiceMonitor", []):
        if [e.get("port") for e in monitor["spec"]["endpoints"]] != ["admin"]:
            problem(f"{where}: ServiceMonitor does not scrape the admin port")
    if values.get("grafanaDashboard", {}).get("enabled"):
        boards = [d for d in kinds.get("ConfigMap", []) if "cartstream.json" in d.get("data", {})]
        if len(boards) != 1 or '"cartstream_' not in boards[0]["data"]["cartstream.json"].replace("(cartstream_", '"cartstream_'):
            problem(f"{where}: dashboard ConfigMap missing or empty")
        elif boards[0]["metadata"]["labels"].get("grafana_dashboard") != "1":
            problem(f"{where}: dashboard ConfigMap lacks the grafana sidecar label")
    check_config(where, docs, binary, values)
    if "processor" in workloads:
        check_static_membership(where, workloads["processor"], docs, binary, values)
    print(f"{where}: {len(docs)} manifests: " + ", ".join(f"{len(v)} {k}" for k, v in sorted(kinds.items())))


def main():
    chart_dir, binary = sys.argv[1], sys.argv[2]
    chart = helm.Chart.load(chart_dir)
    for name, (values, roles) in VALUE_SETS.items():
        check_set(chart, chart_dir, binary, name, values, roles)

    # Without the Kafka address, rendering must fail and say why.
    for values in ({}, {"kafka": {"brokers": ""}}):
        try:
            render(chart, values)
            problem(f"rendering with {values} succeeded without kafka.brokers")
        except helm.HelmError as e:
            if "kafka.brokers is required" not in str(e):
                problem(f"rendering without kafka.brokers failed for another reason: {e}")
    print("without kafka.brokers: refused, as required")

    # Secret values never belong in the chart's defaults.
    defaults = open(os.path.join(chart_dir, "values.yaml"), encoding="utf-8").read()
    if "secret = \"" in defaults or "whsec_" in defaults:
        problem("values.yaml contains an inline secret")

    if problems:
        sys.exit(f"check_chart: {len(problems)} problems")


if __name__ == "__main__":
    main()

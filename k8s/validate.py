"""Strict validation of rendered kustomize output, and a JSON description for tests/deployment.rs.

  validate.py check [--kubernetes-version V]... [--known-flags HELP.txt] RENDERED.yaml...
  validate.py describe RENDERED.yaml        # JSON on stdout: the server container as deployed

`check` validates core kinds with kubernetes-validate's strict schemas (unknown fields fail),
CRD instances and the prometheus-adapter config against k8s/schemas/*.json (also closed), then
checks that the pieces agree with each other (ports, probes, shutdown timing, selectors, metric
names). Exit status 1 on any problem.
"""

import argparse
import json
import pathlib
import re
import sys

import jsonschema
import kubernetes_validate
import referencing
import yaml
from kubernetes_validate import utils as kv

SCHEMAS = pathlib.Path(__file__).resolve().parent / "schemas"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntime.json",
}
ADAPTER_KEY = "config.yaml"  # a ConfigMap with this key and a `rules` list is an adapter config


def load(path):
    return [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]


def flags(args):
    """`--name=value` / `--name value` / `--name` -> {name: value}; later flags win, as in the server."""
    out, i = {}, 0
    while i < len(args):
        body = args[i].lstrip("-")
        if "=" in body:
            name, value = body.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            name, value, i = body, args[i + 1], i + 1
        else:
            name, value = body, "true"
        out[name] = value
        i += 1
    return out


def seconds(flag_map, name):
    return int(flag_map.get(name, "0"))


def prestop_seconds(container):
    handler = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in handler:
        return int(handler["sleep"]["seconds"])
    command = handler.get("exec", {}).get("command", [])
    return int(command[1]) if len(command) == 2 and command[0] == "sleep" else 0


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def metric_name(series_query):
    match = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", series_query)
    return match.group(1) if match else None


def adapter_rules(docs):
    for d in docs:
        if d["kind"] == "ConfigMap" and ADAPTER_KEY in d.get("data", {}):
            config = yaml.safe_load(d["data"][ADAPTER_KEY])
            if isinstance(config, dict) and "rules" in config:
                yield d, config


def hpa_metric_names(hpa):
    names = []
    for m in hpa["spec"].get("metrics", []):
        if m["type"] in ("Pods", "Object", "External"):
            names.append(m[m["type"].lower()]["metric"]["name"])
    return names


def schema_validator(schema_file, version):
    """A validator for one of our closed CRD schemas; `$ref`s resolve into k8s' strict definitions."""
    version = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)][-1]
    definitions = kv.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
    registry = referencing.Resource.from_contents(definitions) @ referencing.Registry()
    schema = json.loads((SCHEMAS / schema_file).read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def check_schemas(docs, versions, errors):
    for d in docs:
        where = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        for version in versions:
            crd = CRD_SCHEMAS.get((d.get("apiVersion"), d.get("kind")))
            try:
                if crd:
                    found = list(schema_validator(crd, version).iter_errors(d))
                else:
                    kubernetes_validate.validate(d, version, strict=True)  # raises the first error
                    found = []
            except jsonschema.ValidationError as e:
                found = [e]
            except kv.SchemaNotFoundError as e:
                found = []
                errors.append(f"{where}: no schema: {e.message}")
            for e in found:
                path = ".".join(str(p) for p in e.absolute_path)
                errors.append(f"{where}: k8s {version}: {path}: {e.message}")
    for d, config in adapter_rules(docs):
        validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / "prometheus-adapter-config.json").read_text()))
        for e in validator.iter_errors(config):
            errors.append(f"ConfigMap/{d['metadata']['name']}: {ADAPTER_KEY}: {'.'.join(map(str, e.absolute_path))}: {e.message}")


def check_deployment(dep, by_kind, known_flags, errors):
    name = f"Deployment/{dep['metadata']['name']}"
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    err = lambda msg: errors.append(f"{name}: {msg}")  # noqa: E731
    if spec.get("replicas", 1) < 2:
        err("replicas < 2")
    if not pod.get("topologySpreadConstraints"):
        err("no topologySpreadConstraints")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    config_maps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    pod_non_root = pod.get("securityContext", {}).get("runAsNonRoot")
    for c in pod.get("initContainers", []) + pod["containers"]:
        cname = f"container {c['name']}"
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}):
                    err(f"{cname}: no {kind}.{r}")
        sc = c.get("securityContext", {})
        if not (sc.get("runAsNonRoot", pod_non_root)):
            err(f"{cname}: runAsNonRoot is not set")
        if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
            err(f"{cname}: needs readOnlyRootFilesystem: true and allowPrivilegeEscalation: false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            err(f"{cname}: capabilities are not all dropped")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                err(f"{cname}: volumeMount {m['name']} has no volume")
    for v in volumes.values():
        if "configMap" in v and v["configMap"]["name"] not in config_maps:
            err(f"volume {v['name']}: ConfigMap {v['configMap']['name']} is not in the render")

    server = pod["containers"][0]
    args = flags(server.get("args", []))
    unknown = [f for f in args if known_flags is not None and f not in known_flags]
    if unknown:
        err(f"flags the binary does not know (see --help): {unknown}")
    ports = {p.get("name"): p["containerPort"] for p in server.get("ports", [])}
    if ports.get("grpc") != int(args.get("port", 8500)):
        err(f"container port 'grpc' {ports.get('grpc')} != --port {args.get('port', 8500)}")
    if "http" in ports and ports["http"] != int(args.get("rest_api_port", 0)):
        err(f"container port 'http' {ports['http']} != --rest_api_port")
    # kubelet's gRPC probes speak plaintext only: with TLS on the gRPC port the probes must be
    # HTTPS ones on the REST port's health endpoints.
    grpc_tls = "ssl_config_file" in args or "grpc_ssl_cert_file" in args
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        handlers = server.get(probe, {})
        if grpc_tls:
            http = handlers.get("httpGet")
            if not http or "grpc" in handlers:
                err(f"{probe}: the gRPC port uses TLS, so the probe must be an httpGet on the REST port")
            elif http.get("scheme") != "HTTPS" or http.get("port") != ports.get("http") or not http.get("path", "").startswith("/v1/health/"):
                err(f"{probe}: expected an HTTPS httpGet of /v1/health/* on port {ports.get('http')}, got {http}")
            elif "rest_api_ssl_client_ca_file" in args:
                err(f"{probe}: kubelet has no client certificate, so the REST port cannot require one")
            continue
        grpc = handlers.get("grpc")
        if not grpc:
            err(f"{probe} is not a gRPC probe")
        elif grpc["port"] != ports.get("grpc"):
            err(f"{probe} probes port {grpc['port']}, the gRPC port is {ports.get('grpc')}")
    # Shutdown: preStop, then SIGTERM -> shutdown delay -> drain, all inside the grace period.
    grace = pod.get("terminationGracePeriodSeconds", 30)
    after_term = seconds(args, "shutdown_delay_seconds") + seconds(args, "drain_timeout_seconds")
    if prestop_seconds(server) == 0:
        err("no preStop sleep")
    if prestop_seconds(server) + after_term >= grace:
        err(f"preStop {prestop_seconds(server)}s + shutdown delay + drain {after_term}s >= terminationGracePeriodSeconds {grace}s")
    live = server.get("livenessProbe", {})
    if live.get("periodSeconds", 10) * live.get("failureThreshold", 3) <= after_term:
        err(f"liveness would fail during shutdown: period x threshold <= shutdown delay + drain ({after_term}s)")
    # The model config file must come from a mounted ConfigMap that has that key.
    path = args.get("model_config_file")
    if path:
        for m in server.get("volumeMounts", []):
            cm = volumes.get(m["name"], {}).get("configMap")
            if cm and path.startswith(m["mountPath"].rstrip("/") + "/"):
                key = path[len(m["mountPath"].rstrip("/")) + 1:]
                if key not in config_maps.get(cm["name"], {}).get("data", {}):
                    err(f"--model_config_file {path}: ConfigMap {cm['name']} has no key {key}")
                break
        else:
            err(f"--model_config_file {path} is not inside a ConfigMap volume")
    return pod, ports


def check_wiring(docs, known_flags, errors):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    seen = set()
    for d in docs:
        key = (d["kind"], d["metadata"]["name"])
        if key in seen:
            errors.append(f"duplicate {key}")
        seen.add(key)
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    pods = {n: check_deployment(d, by_kind, known_flags, errors) for n, d in deployments.items()}
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}

    services = by_kind.get("Service", [])
    for s in services:
        targets = [n for n, l in labels.items() if selects(s["spec"].get("selector"), l)]
        if deployments and not targets:
            errors.append(f"Service/{s['metadata']['name']}: selects no Deployment's pods")
        for p in s["spec"]["ports"]:
            if p.get("name") in ("grpc", "http") and not p.get("appProtocol"):
                errors.append(f"Service/{s['metadata']['name']}: port {p['name']} has no appProtocol")
            for t in targets:
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in pods[t][1]:
                    errors.append(f"Service/{s['metadata']['name']}: targetPort {p['targetPort']} is not a port of {t}")
    if deployments and not any(s["spec"].get("clusterIP") == "None" for s in services):
        errors.append("no headless Service")

    exposed = {r["name"].get("as") or metric_name(r["seriesQuery"]) for _, c in adapter_rules(docs) for r in c["rules"]}
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        name, spec = f"HorizontalPodAutoscaler/{h['metadata']['name']}", h["spec"]
        if spec["scaleTargetRef"]["name"] not in deployments:
            errors.append(f"{name}: scaleTargetRef {spec['scaleTargetRef']['name']} is not in the render")
        if spec.get("minReplicas", 1) < 2:
            errors.append(f"{name}: minReplicas < 2")
        if "stabilizationWindowSeconds" not in spec.get("behavior", {}).get("scaleDown", {}):
            errors.append(f"{name}: no scale-down stabilization window")
        if not any(m["type"] == "Pods" for m in spec.get("metrics", [])):
            errors.append(f"{name}: no Pods metric")
        for metric in hpa_metric_names(h):
            if metric not in exposed:
                errors.append(f"{name}: metric {metric} is not exposed by a prometheus-adapter rule in the render")

    for p in by_kind.get("PodDisruptionBudget", []):
        if not any(selects(p["spec"]["selector"].get("matchLabels"), l) for l in labels.values()):
            errors.append(f"PodDisruptionBudget/{p['metadata']['name']}: selects no Deployment's pods")
    for m in by_kind.get("ServiceMonitor", []):
        chosen = [s for s in services if selects(m["spec"]["selector"].get("matchLabels"), s["metadata"].get("labels", {}))]
        if len(chosen) != 1:
            errors.append(f"ServiceMonitor/{m['metadata']['name']}: selects {len(chosen)} Services, want exactly 1")
        for e in m["spec"]["endpoints"]:
            if chosen and e["port"] not in [p.get("name") for p in chosen[0]["spec"]["ports"]]:
                errors.append(f"ServiceMonitor/{m['metadata']['name']}: Service has no port {e['port']}")
    for r in by_kind.get("ServingRuntime", []):
        for c in r["spec"]["containers"]:
            unknown = [f for f in flags(c.get("args", [])) if known_flags is not None and f not in known_flags]
            if unknown:
                errors.append(f"ServingRuntime/{r['metadata']['name']}: flags the binary does not know: {unknown}")
    return by_kind


def describe(docs):
    """What tests/deployment.rs needs to start the server as the (single) Deployment would."""
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    (dep,) = by_kind["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    server = pod["containers"][0]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    config_maps = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind.get("ConfigMap", [])}
    mounts = {}
    for m in server.get("volumeMounts", []):
        cm = volumes[m["name"]].get("configMap")
        mounts[m["mountPath"]] = {"config_map": config_maps[cm["name"]]} if cm else {"volume": m["name"]}
    probes = {}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in server:
            probes[kind] = server[kind]
    annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
    adapter = [metric_name(r["seriesQuery"]) for _, c in adapter_rules(docs) for r in c["rules"]]
    adapter += [r["name"]["as"] for _, c in adapter_rules(docs) for r in c["rules"] if "as" in r["name"]]
    hpa = [n for h in by_kind.get("HorizontalPodAutoscaler", []) for n in hpa_metric_names(h)]
    return {
        "args": server.get("args", []),
        "ports": {p["name"]: p["containerPort"] for p in server.get("ports", [])},
        "probes": probes,
        "prestop_seconds": prestop_seconds(server),
        "termination_grace_period_seconds": pod.get("terminationGracePeriodSeconds", 30),
        "mounts": mounts,
        "scrape": {"port": int(annotations["prometheus.io/port"]), "path": annotations.get("prometheus.io/path", "/metrics")},
        "metric_names": sorted(set(hpa + adapter)),
    }


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check")
    check.add_argument("--kubernetes-version", action="append", dest="versions")
    check.add_argument("--known-flags", help="the binary's --help output; every flag used must be in it")
    check.add_argument("files", nargs="+")
    desc = sub.add_parser("describe")
    desc.add_argument("file")
    opts = parser.parse_args()
    if opts.command == "describe":
        json.dump(describe(load(opts.file)), sys.stdout, indent=1)
        return 0
    known = None
    if opts.known_flags:
        known = set(re.findall(r"^\s+--([a-z0-9_]+)", pathlib.Path(opts.known_flags).read_text(), re.M))
    failed = False
    for f in opts.files:
        errors, docs = [], load(f)
        check_schemas(docs, opts.versions or [kv.latest_version()], errors)
        by_kind = check_wiring(docs, known, errors)
        kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
        print(f"{'FAIL' if errors else 'ok  '} {pathlib.Path(f).stem}: {kinds}")
        for e in errors:
            print(f"     - {e}")
        failed |= bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

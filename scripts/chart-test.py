#!/usr/bin/env python3
"""Checks charts/warren-controller without a cluster or a helm binary.

Run by scripts/chart-test.sh (which makes the venv) from tests/tests/chart.rs.
It uses Helm's own Go library (PyPI helm-python-sdk: lint, schema, render)
and the Kubernetes OpenAPI schemas (PyPI kubernetes-validate):

1. `helm lint --strict` of every value set in charts/warren-controller/ci/,
   for Kubernetes 1.29 and 1.33: no warning, no error.
2. Each set rendered; every object validated (strict: unknown fields are
   errors) against the 1.29 and 1.33 schemas; what each set is for asserted
   (dial-only has no agent port, existing secrets are mounted where the flags
   point, ...); every flag the Deployment passes is one `serve` accepts.
3. Bad values refused by values.schema.json, each with the expected message.

Prints one line per step with its figures and time; exits 1 on any failure.
"""

import base64
import os
import re
import sys
import time

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "warren-controller")
CI = os.path.join(CHART, "ci")
KUBE = ["1.29.0", "1.33.0"]
SECRETS = "/run/secrets/warren/"

failures = []


def fail(what):
    failures.append(what)
    print(f"FAIL: {what}")


def check(cond, what):
    if not cond:
        fail(what)
    return cond


def load(name):
    with open(os.path.join(CI, name)) as f:
        return yaml.safe_load(f) or {}


def serve_flags():
    """The long flags `warren-controller serve` accepts, from its clap Args."""
    src = open(os.path.join(ROOT, "controller", "src", "cmd", "serve.rs")).read()
    body = src[src.index("pub struct Args {"):]
    body = body[: body.index("\n}\n")]
    flags = set()
    pending = False
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("#[arg(") and "long" in line:
            pending = True
        m = re.match(r"^(\w+): ", line)
        if m and pending:
            flags.add("--" + m.group(1).replace("_", "-"))
            pending = False
    return flags


def render(chart, values):
    out = chart.render(values, name="warren", namespace="net", is_install=True)
    objs, notes = [], ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objs.append(doc)
    return objs, notes


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def one(objs, kind, name_suffix=""):
    found = [o for o in by_kind(objs, kind) if o["metadata"]["name"].endswith(name_suffix)]
    check(len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}")
    return found[0] if found else {}


def validate(objs, label):
    """Every object against each Kubernetes version's strict schema; the
    ServiceMonitor (a prometheus-operator CRD, not in Kubernetes' schemas)
    against the fields of its CRD that the chart uses."""
    n = 0
    for o in objs:
        if o["kind"] == "ServiceMonitor":
            check(o["apiVersion"] == "monitoring.coreos.com/v1", f"{label}: ServiceMonitor apiVersion")
            spec = o.get("spec", {})
            check(set(spec) <= {"selector", "namespaceSelector", "endpoints"}, f"{label}: ServiceMonitor spec keys {set(spec)}")
            for ep in spec.get("endpoints", []):
                check(set(ep) <= {"port", "path", "interval", "scrapeTimeout"}, f"{label}: endpoint keys {set(ep)}")
                for d in ("interval", "scrapeTimeout"):
                    check(re.fullmatch(r"[0-9]+(ms|s|m|h)", ep.get(d, "")) is not None, f"{label}: ServiceMonitor {d}")
            continue
        for v in KUBE:
            try:
                kubernetes_validate.validate(o, v, strict=True)
                n += 1
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                fail(f"{label}: {o['kind']}/{o['metadata']['name']} invalid for Kubernetes {v} at {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                fail(f"{label}: {e.message}")
    return n


def pod_checks(objs, label, flags):
    """What every rendering must hold: one replica, Recreate, the locked-down
    pod, /healthz probes, flags serve knows, secrets mounted where flags point."""
    d = one(objs, "Deployment")
    spec = d["spec"]
    check(spec["replicas"] == 1, f"{label}: replicas {spec['replicas']}")
    check(spec["strategy"] == {"type": "Recreate"}, f"{label}: strategy {spec['strategy']}")
    pod = spec["template"]["spec"]
    psc = pod["securityContext"]
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) > 0, f"{label}: pod not non-root")
    check(psc.get("seccompProfile") == {"type": "RuntimeDefault"}, f"{label}: pod seccomp")
    check(pod.get("automountServiceAccountToken") is False, f"{label}: service account token mounted")
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c["securityContext"]
        check(sc.get("readOnlyRootFilesystem") is True, f"{label}: {c['name']} root filesystem writable")
        check(sc.get("allowPrivilegeEscalation") is False, f"{label}: {c['name']} may escalate")
        check(sc.get("capabilities") == {"drop": ["ALL"]}, f"{label}: {c['name']} capabilities {sc.get('capabilities')}")
        check(sc.get("seccompProfile") == {"type": "RuntimeDefault"}, f"{label}: {c['name']} seccomp")
        check(sc.get("runAsNonRoot") is True, f"{label}: {c['name']} runAsNonRoot")
        for m in c.get("volumeMounts", []):
            check(m["name"] in volumes, f"{label}: {c['name']} mounts missing volume {m['name']}")
    c = pod["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        check(c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, f"{label}: {probe} {c[probe]}")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    args = c["args"]
    check(args[0] == "serve", f"{label}: args[0] {args[0]}")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for a in args[1:]:
        flag, _, value = a.partition("=")
        check(flag in flags, f"{label}: serve has no flag {flag}")
        if value.startswith(SECRETS):
            mdir, _, item = value.rpartition("/")
            m = mounts.get(mdir)
            if check(m is not None and m.get("readOnly") is True, f"{label}: {flag} points at {mdir}, not a read-only mount"):
                sec = volumes[m["name"]]["secret"]
                check([i["path"] for i in sec["items"]] == [item], f"{label}: {flag} file {item} not in {sec['items']}")
                check(sec["defaultMode"] == 0o440, f"{label}: {flag} secret mode {sec['defaultMode']:o}")
    argmap = dict(a.partition("=")[::2] for a in args[1:])
    check(argmap.get("--http", "").endswith(f":{ports['http']}"), f"{label}: --http {argmap.get('--http')} vs port {ports['http']}")
    check(argmap.get("--state-dir") == "/var/lib/warren-controller", f"{label}: --state-dir")
    check(any(m["mountPath"] == "/var/lib/warren-controller" and m["name"] == "state" for m in c["volumeMounts"]), f"{label}: state not mounted")
    # Services point at ports the container has.
    for s in by_kind(objs, "Service"):
        for p in s["spec"]["ports"]:
            check(p["targetPort"] in ports, f"{label}: Service {s['metadata']['name']} targets missing port {p['targetPort']}")
    return d, pod, c, argmap, ports


def main():
    t0 = time.monotonic()
    flags = serve_flags()
    check({"--repo", "--listen", "--http", "--webhook-secret-file", "--repo-ssh-key", "--forge-token-file"} <= flags,
          f"serve flags parsed from serve.rs: {sorted(flags)}")
    sets = sorted(f for f in os.listdir(CI) if f.endswith("-values.yaml"))
    check(len(sets) >= 5, f"value sets in ci/: {sets}")
    print(f"chart: helm library {helm.helm_sdk_version()}, kubernetes-validate {kubernetes_validate.__version__}, "
          f"{len(sets)} value sets, {len(flags)} serve flags")

    # 1. Lint, strictly, per set and Kubernetes version.
    t = time.monotonic()
    lints = 0
    for s in sets:
        for v in KUBE:
            r = helm.lint(CHART, load(s), strict=True, kube_version="v" + v, namespace="net")
            bad = [m for m in r["messages"] if m["severity"] >= 2] + [{"error": e} for e in r["errors"]]
            check(r["total_charts_linted"] == 1 and not bad, f"lint {s} k8s {v}: {bad}")
            lints += 1
    print(f"chart: helm lint --strict: {lints} runs ({len(sets)} sets x {len(KUBE)} Kubernetes versions) clean "
          f"in {time.monotonic() - t:.2f}s")

    # 2. Render and validate.
    t = time.monotonic()
    chart = helm.Chart.load(CHART)
    check(chart.metadata["name"] == "warren-controller", "chart name")
    total_objs = total_valid = 0
    rendered = {}
    for s in sets:
        objs, notes = render(chart, load(s))
        rendered[s] = (objs, notes)
        total_objs += len(objs)
        total_valid += validate(objs, s)
        pod_checks(objs, s, flags)
        check("created the controller key" in notes, f"{s}: NOTES.txt does not say how to find the public key")
    print(f"chart: rendered {total_objs} objects from {len(sets)} sets; {total_valid} validations "
          f"(strict, Kubernetes {' and '.join(KUBE)}) passed in {time.monotonic() - t:.2f}s")

    # What each set is for.
    objs, notes = rendered["minimal-values.yaml"]
    kinds = sorted(o["kind"] for o in objs)
    check(kinds == ["Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Service", "Service", "ServiceAccount"],
          f"minimal: kinds {kinds}")
    d, pod, c, argmap, ports = pod_checks(objs, "minimal", flags)
    check(argmap.get("--listen") == "0.0.0.0:7701" and argmap.get("--http") == "0.0.0.0:9180", f"minimal: addresses {argmap}")
    check("initContainers" not in pod, "minimal: an init container without a signing key Secret")
    agents = one(objs, "Service", "-agents")
    check(agents.get("spec", {}).get("type") == "LoadBalancer", "minimal: agent Service not LoadBalancer")
    check(one(objs, "Service", "-http").get("spec", {}).get("type") == "ClusterIP", "minimal: http Service not ClusterIP")
    np = one(objs, "NetworkPolicy")["spec"]
    check(np.get("ingress") == [{"ports": [{"protocol": "TCP", "port": "agents"}]}], f"minimal: NetworkPolicy {np.get('ingress')}")
    check(pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == one(objs, "PersistentVolumeClaim")["metadata"]["name"],
          "minimal: state volume is not the PVC")
    check("kubectl -n net logs deploy/warren-warren-controller | grep 'created the controller key'" in notes, "minimal: NOTES command")

    objs, notes = rendered["existing-secrets-values.yaml"]
    check(not by_kind(objs, "Secret"), "existing-secrets: the chart made a Secret")
    check(not by_kind(objs, "PersistentVolumeClaim"), "existing-secrets: a PVC despite existingClaim")
    d, pod, c, argmap, ports = pod_checks(objs, "existing-secrets", flags)
    secret_names = sorted(v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v)
    check(secret_names == ["warren-deploy-key", "warren-forge", "warren-signing-key", "warren-webhook"],
          f"existing-secrets: secrets {secret_names}")
    check("initContainers" not in pod, "existing-secrets: no init container (the image has no shell)")
    check(argmap.get("--signing-key-file") == "/run/secrets/warren/signing-key/controller.key",
          f"existing-secrets: signing key {argmap}")
    key_vol = [v for v in pod["volumes"] if v.get("name") == "signing-key"][0]
    check(key_vol["secret"]["defaultMode"] == 0o440 and pod["securityContext"].get("fsGroup") == 65532,
          f"existing-secrets: the key is group-readable for the pod's fsGroup {key_vol} {pod['securityContext']}")
    check(argmap.get("--repo-host-key", "").startswith("ssh-ed25519 AAAA"), "existing-secrets: host key")
    check(argmap.get("--forge") == "gitea" and argmap.get("--forge-url") == "https://git.example.net/api/v1"
          and argmap.get("--forge-token-file") == "/run/secrets/warren/forge/token", f"existing-secrets: forge {argmap}")
    check(pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "warren-state", "existing-secrets: claim")
    agents = one(objs, "Service", "-agents")["spec"]
    check(agents["type"] == "NodePort" and agents["ports"][0].get("nodePort") == 30771
          and agents.get("externalTrafficPolicy") == "Local", f"existing-secrets: agent Service {agents}")
    check("Secret warren-signing-key" in notes, "existing-secrets: NOTES names the key Secret")

    objs, notes = rendered["ingress-values.yaml"]
    d, pod, c, argmap, ports = pod_checks(objs, "ingress", flags)
    check(argmap.get("--http") == "[::]:9180" and argmap.get("--listen") == "[::]:7701", f"ingress: IPv6 addresses {argmap}")
    sec = one(objs, "Secret").get("data", {})
    check({k: base64.b64decode(v).decode() for k, v in sec.items()}
          == {"webhook-secret": "change-me-webhook", "forge-token": "ghp_example"}, f"ingress: Secret {sec}")
    ing = one(objs, "Ingress")["spec"]
    paths = ing["rules"][0]["http"]["paths"]
    check(len(paths) == 1 and paths[0]["path"] == "/webhook" and paths[0]["pathType"] == "Exact"
          and paths[0]["backend"]["service"]["name"].endswith("-http"), f"ingress: paths {paths}")
    check(ing.get("tls") == [{"hosts": ["warren.example.net"], "secretName": "warren-tls"}], f"ingress: tls {ing.get('tls')}")
    check(ing.get("ingressClassName") == "traefik", "ingress: class")
    np = one(objs, "NetworkPolicy")["spec"]["ingress"]
    check(len(np) == 2 and np[1]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
          f"ingress: NetworkPolicy {np}")
    check("https://warren.example.net/webhook" in notes, "ingress: NOTES webhook URL")
    check("checksum/secret" in d["spec"]["template"]["metadata"]["annotations"], "ingress: no secret checksum")

    objs, notes = rendered["dial-only-values.yaml"]
    d, pod, c, argmap, ports = pod_checks(objs, "dial-only", flags)
    check("--listen" not in argmap and "agents" not in ports, f"dial-only: agent listener {argmap} {ports}")
    check([s["metadata"]["name"] for s in by_kind(objs, "Service")] == ["warren-warren-controller-http"], "dial-only: services")
    check(not by_kind(objs, "PersistentVolumeClaim") and pod["volumes"][0] == {"name": "state", "emptyDir": {}},
          "dial-only: state is not an emptyDir")
    check(one(objs, "NetworkPolicy")["spec"].get("ingress") == [], "dial-only: NetworkPolicy lets something in")
    check("dial-only" in notes and "WARNING: persistence.enabled is false" in notes, "dial-only: NOTES")

    objs, notes = rendered["servicemonitor-values.yaml"]
    sm = one(objs, "ServiceMonitor")
    sel = sm["spec"]["selector"]["matchLabels"]
    svcs = {s["metadata"]["name"]: s["metadata"]["labels"] for s in by_kind(objs, "Service")}
    matched = [n for n, labels in svcs.items() if all(labels.get(k) == v for k, v in sel.items())]
    check(matched == ["warren-warren-controller-http"], f"servicemonitor: selects {matched}")
    check(sm["metadata"]["labels"].get("release") == "prometheus", "servicemonitor: labels")
    check(sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}],
          f"servicemonitor: endpoints {sm['spec']['endpoints']}")
    froms = one(objs, "NetworkPolicy")["spec"]["ingress"][1]["from"]
    check(froms == [{"podSelector": {"matchLabels": {"app": "uptime-probe"}}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
          f"servicemonitor: NetworkPolicy from {froms}")

    # 3. Bad values, refused by the schema with these messages.
    t = time.monotonic()
    url = {"url": "https://git.example.net/n.git"}
    bad = [
        ("defaults (no repo.url)", {}, "at '/repo/url': minLength: got 0, want 1"),
        ("replicaCount 2", {"repo": url, "replicaCount": 2}, "at '/replicaCount': value must be 1"),
        ("agent Service type", {"repo": url, "agentListen": {"service": {"type": "LoadBalancr"}}},
         "at '/agentListen/service/type': value must be one of 'ClusterIP', 'NodePort', 'LoadBalancer'"),
        ("negative http port", {"repo": url, "http": {"port": -1}}, "at '/http/port': minimum: got -1, want 1"),
        ("agent port 70000", {"repo": url, "agentListen": {"port": 70000}}, "at '/agentListen/port': maximum: got 70,000, want 65,535"),
        ("nodePort 80", {"repo": url, "agentListen": {"service": {"nodePort": 80}}}, "at '/agentListen/service/nodePort': minimum: got 80, want 30,000"),
        ("ftp repo URL", {"repo": {"url": "ftp://x/y"}}, "at '/repo/url': 'ftp://x/y' does not match pattern"),
        ("ssh repo without host key", {"repo": {"url": "ssh://git@git.example.net/n.git"}}, "at '/repo/hostKey': minLength: got 0, want 1"),
        ("malformed host key", {"repo": {**url, "hostKey": "AAAA"}}, "at '/repo/hostKey': 'AAAA' does not match pattern"),
        ("ingress without host", {"repo": url, "ingress": {"enabled": True}}, "at '/ingress/host': minLength: got 0, want 1"),
        ("gitea without url", {"repo": url, "forge": {"kind": "gitea", "repo": "a/b", "token": "t"}}, "at '/forge/url': minLength: got 0, want 1"),
        ("forge without repo", {"repo": url, "forge": {"kind": "github", "token": "t"}}, "at '/forge/repo': minLength: got 0, want 1"),
        ("forge without token", {"repo": url, "forge": {"kind": "github", "repo": "a/b"}}, "at '/forge/token': minLength: got 0, want 1"),
        ("forge kind", {"repo": url, "forge": {"kind": "gitlab"}}, "at '/forge/kind': value must be one of '', 'github', 'gitea'"),
        ("poll 0", {"repo": url, "pollSecs": 0}, "at '/pollSecs': exclusiveMinimum: got 0, want 0"),
        ("confirm 1", {"repo": url, "confirmSecs": 1}, "at '/confirmSecs': minimum: got 1, want 5"),
        ("log format", {"repo": url, "logFormat": "yaml"}, "at '/logFormat': value must be one of 'text', 'json'"),
        ("writable root", {"repo": url, "securityContext": {"readOnlyRootFilesystem": False}},
         "at '/securityContext/readOnlyRootFilesystem': value must be true"),
        ("privilege escalation", {"repo": url, "securityContext": {"allowPrivilegeEscalation": True}},
         "at '/securityContext/allowPrivilegeEscalation': value must be false"),
        ("root", {"repo": url, "podSecurityContext": {"runAsUser": 0}}, "at '/podSecurityContext/runAsUser': minimum: got 0, want 1"),
        ("misspelt key", {"repo": url, "replicas": 1}, "additional properties 'replicas' not allowed"),
        ("size", {"repo": url, "persistence": {"size": "lots"}}, "at '/persistence/size': 'lots' does not match pattern"),
    ]
    refused = 0
    for what, values, want in bad:
        try:
            chart.validate_schema(chart.merge_values(values))
            fail(f"bad values accepted by the schema: {what}: {values}")
            continue
        except helm.HelmValuesError as e:
            msg = str(e)
        if check(want in msg, f"{what}: message {msg!r} lacks {want!r}"):
            refused += 1
        try:
            chart.render(values, name="warren")
            fail(f"bad values rendered: {what}")
        except helm.HelmError as e:
            check(want in str(e), f"{what}: render refused with {e}")
        print(f"  refused {what}: {want}")
    print(f"chart: {refused}/{len(bad)} bad value sets refused by values.schema.json with the expected message "
          f"in {time.monotonic() - t:.2f}s")

    print(f"chart: {len(failures)} failures, {time.monotonic() - t0:.2f}s in all")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Helm chart helper for tests/chart.rs: lint, render and validate offline.

Needs the PyPI packages helm-python-sdk (Helm 4 as a library) and
kubernetes-validate (the Kubernetes JSON schemas); `bash scripts/test.sh`
installs them.

  chart.py render CHART [-f VALUES]... [--set-json JSON] [--kube-version V]...
      Lints the chart (strict) with the merged values, renders it as release
      "k8gb" in namespace "k8gb", validates every object, and prints one JSON
      object: {"lint": [...], "objects": [...], "notes": "...",
      "invalid": [...], "errors": [...]}. Exit 0 when it rendered.
  chart.py expect-fail CHART [-f VALUES]... [--set-json JSON]
      Exit 0 and print the error when lint or render rejects the values;
      exit 1 when they are accepted.
  chart.py validate FILE... [--crds DIR] [--kube-version V]...
      Validates every document of the YAML files: built-in kinds against the
      Kubernetes schemas (strict: unknown fields are errors), Gslbs against
      the CRDs' openAPIV3Schema. Prints {"checked": N, "invalid": [...]}.
"""

import argparse
import copy
import json
import os
import sys

RELEASE = "k8gb"
NAMESPACE = "k8gb"
DEFAULT_KUBE_VERSIONS = ["1.26.0", "1.37.0"]

try:
    import yaml
    import jsonschema
    import kubernetes_validate
    from helm_python.chart import Chart, lint
except ImportError as e:  # the Rust test turns this into an install hint
    print(f"chart.py: missing Python module: {e.name} "
          "(pip install helm-python-sdk kubernetes-validate, or bash scripts/test.sh)",
          file=sys.stderr)
    sys.exit(3)

# The one custom resource the chart renders without a Kubernetes schema:
# the fields of monitoring.coreos.com/v1 ServiceMonitor it may use.
SERVICE_MONITOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "additionalProperties": False,
                             "properties": {"matchLabels": {"type": "object"},
                                            "matchExpressions": {"type": "array"}}},
                "namespaceSelector": {"type": "object", "additionalProperties": False,
                                      "properties": {"matchNames": {"type": "array",
                                                                    "items": {"type": "string"}},
                                                     "any": {"type": "boolean"}}},
                "jobLabel": {"type": "string"},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                   "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                   "scrapeTimeout": {"type": "string"},
                                   "scheme": {"enum": ["http", "https"]},
                                   "honorLabels": {"type": "boolean"}}}},
            },
        },
    },
}


def merge(base, over):
    """Helm's coalescing of values: maps merge, null deletes, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def user_values(files, set_json):
    values = {}
    for f in files or []:
        with open(f) as fh:
            values = merge(values, yaml.safe_load(fh) or {})
    for s in set_json or []:
        values = merge(values, json.loads(s))
    return values


def strictify(schema):
    """The API server's strict field validation: unknown fields are errors
    wherever the schema lists properties and does not preserve unknown ones."""
    if isinstance(schema, dict):
        out = {k: strictify(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strictify(v) for v in schema]
    return schema


def crd_schemas(crd_dir):
    """(group, version, kind) -> openAPIV3Schema of the chart's CRDs."""
    out = {}
    if not crd_dir or not os.path.isdir(crd_dir):
        return out
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(crd_dir, name)) as fh:
            for doc in yaml.safe_load_all(fh):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for v in spec["versions"]:
                    schema = v.get("schema", {}).get("openAPIV3Schema")
                    if schema:
                        out[(spec["group"], v["name"], spec["names"]["kind"])] = strictify(schema)
    return out


def validate_object(obj, kube_versions, crds):
    """Error texts for one object (empty when valid)."""
    api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    if api == "monitoring.coreos.com/v1" and kind == "ServiceMonitor":
        return [e.message for e in jsonschema.Draft7Validator(SERVICE_MONITOR).iter_errors(obj)]
    group, _, version = api.rpartition("/")
    if (group, version, kind) in crds:
        schema = crds[(group, version, kind)]
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        errors = []
        for e in jsonschema.Draft7Validator(schema).iter_errors(body):
            errors.append(f"{'/'.join(map(str, e.absolute_path))}: {e.message}")
        return errors
    errors = []
    for v in kube_versions:
        try:
            kubernetes_validate.validate(obj, v, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"no schema for {api} {kind} in Kubernetes {v}")
        except kubernetes_validate.ValidationError as e:
            path = "/".join(map(str, e.path)) if hasattr(e, "path") else ""
            errors.append(f"Kubernetes {v}: {path}: {e.message}")
    return errors


def describe(obj):
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def cmd_render(args):
    values = user_values(args.values, args.set_json)
    report = lint(args.chart, values, strict=True, kube_version="v1.33.0")
    messages = report.get("messages", [])
    serious = [m for m in messages if m.get("severity", 0) >= 2]
    if serious or report.get("errors"):
        print(json.dumps({"errors": [m["error"] for m in serious] + report.get("errors", []),
                          "lint": messages}))
        return 1
    rendered = Chart.load(args.chart).render(values, name=RELEASE, namespace=NAMESPACE,
                                             is_install=True)
    objects, notes = [], ""
    for path in sorted(rendered):
        text = rendered[path]
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__source", path)
                objects.append(doc)
    crds = crd_schemas(os.path.join(args.chart, "crds"))
    invalid = []
    for obj in objects:
        clean = {k: v for k, v in obj.items() if k != "__source"}
        for err in validate_object(clean, args.kube_version or DEFAULT_KUBE_VERSIONS, crds):
            invalid.append(f"{describe(obj)} ({obj['__source']}): {err}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for i, obj in enumerate(objects):
            clean = {k: v for k, v in obj.items() if k != "__source"}
            name = f"{i:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
            with open(os.path.join(args.out, name), "w") as fh:
                yaml.safe_dump(clean, fh, sort_keys=False)
    print(json.dumps({"lint": messages, "objects": objects, "notes": notes,
                      "invalid": invalid, "errors": []}))
    return 0


def cmd_expect_fail(args):
    values = user_values(args.values, args.set_json)
    report = lint(args.chart, values, strict=True, kube_version="v1.33.0")
    errors = [m["error"] for m in report.get("messages", []) if m.get("severity", 0) >= 3]
    try:
        Chart.load(args.chart).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except Exception as e:  # HelmRenderError, HelmValuesError
        errors.append(str(e))
    if errors:
        print(errors[-1].strip())
        return 0
    print("accepted", file=sys.stderr)
    return 1


def cmd_validate(args):
    crds = crd_schemas(args.crds)
    checked, invalid = 0, []
    for f in args.files:
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if not doc:
                    continue
                checked += 1
                for err in validate_object(doc, args.kube_version or DEFAULT_KUBE_VERSIONS, crds):
                    invalid.append(f"{f}: {describe(doc)}: {err}")
    print(json.dumps({"checked": checked, "invalid": invalid}))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("render", "expect-fail"):
        s = sub.add_parser(name)
        s.add_argument("chart")
        s.add_argument("-f", "--values", action="append")
        s.add_argument("--set-json", action="append")
        if name == "render":
            s.add_argument("--out")
            s.add_argument("--kube-version", action="append")
    s = sub.add_parser("validate")
    s.add_argument("files", nargs="+")
    s.add_argument("--crds")
    s.add_argument("--kube-version", action="append")
    args = p.parse_args()
    return {"render": cmd_render, "expect-fail": cmd_expect_fail,
            "validate": cmd_validate}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

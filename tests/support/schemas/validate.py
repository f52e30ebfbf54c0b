#!/usr/bin/env python3
"""Validate buildwatch SIEM records against the published ECS / OCSF schemas.

    validate.py ecs FILE.jsonl  [--ecs-package DIR]
    validate.py ocsf FILE.jsonl [--ocsf-schema PATH]
    validate.py --self-test [ecs|ocsf|all]
    validate.py --dump ecs|ocsf        (print the resolved table as JSON, for debugging)

FILE.jsonl holds one JSON record per line (blank lines are skipped; "-" reads stdin).
Every problem is printed as `line N: <field path>: <problem>` and the exit status is 1;
otherwise `N records valid` is printed and the exit status is 0. A schema that cannot
be loaded is an error (exit status 2), never a pass. Python 3 standard library only
(plus `node` for the ECS package). No schema data is kept in this repository: both
tables are read at run time from packages that scripts/setup.sh installs, pinned:

ECS 9.4.0 -- the npm package @elastic/ecs 9.4.0 (Elastic's own, generated from
elastic/ecs; exports `EcsVersion` and `EcsFlat`, the contents of ECS's
generated/ecs/ecs_flat.yml). It is looked up in --ecs-package DIR, else in
$BUILDWATCH_TOOLS/npm/node_modules/@elastic/ecs (BUILDWATCH_TOOLS defaults to
/opt/buildwatch-tools), and read with `node`. Its EcsVersion must be 9.4.0.

OCSF 1.7.0 -- the PyPI package pydantic-ocsf 3.0.0, whose wheel carries the published
schema as ocsf/schemas/v1_7_0.json in the ocsf/ocsf-schema source layout (events,
objects, dictionary, categories). It is located with importlib.util.find_spec("ocsf")
in the Python running this script (the tools venv: /opt/buildwatch-tools/venv/bin/python),
or given with --ocsf-schema PATH, and resolved here at run time as the reference
compiler (ocsf/ocsf-schema-compiler) does, for the base schema (no platform
extensions): `extends` chains down to base_event / _entity, `$include`d profiles,
dictionary definitions under the class/object ones, generated class_uid/category_uid/
type_uid enums, observable type_ids and `*_dt` datetime siblings. The package's file
does not carry the profiles/*.json files that classes and objects `$include`, so the
eleven OCSF 1.7.0 profiles (which attributes each adds, with their requirement) are a
hand-written table of facts here, OCSF_PROFILES.

ECS checks: every leaf field (nested objects flattened with dots, dotted keys accepted)
is an ECS field, except under the custom `buildwatch.` namespace and `labels.` (whose
values must be strings); the value has the field's type; a field with ECS
normalize "array" is a JSON array and no other scalar field is; allowed_values and
pattern hold; every event.type is expected for one of the record's event.category
values; @timestamp, ecs.version (== 9.4.0), event.kind, event.type and, for
event.kind "event", event.category are present. A JSON null counts as a problem.

OCSF checks (as the OCSF server's validator does, for the five classes buildwatch
emits: 1007 Process Activity, 1001 File System Activity, 4001 Network Activity,
4003 DNS Activity, 2004 Detection Finding): class_uid is one of them; every attribute
is defined for its class/object (objects with no attributes, like `unmapped`'s
"object", take anything); an attribute that belongs only to profiles is in effect --
allowed, and its requirement enforced -- only when one of its profiles is in
metadata.profiles; required attributes are present; values have the attribute's type
(arrays when is_array, objects recursively, timestamp_t integer milliseconds, ip_t an
IP address, port_t 0..65535, type regex / max_len / range); enum attributes take a
defined value and an enum's sibling (activity_name, ...) equals the value's caption
unless the value is 99 (Other); class/object constraints (at_least_one, just_one) hold;
type_uid == class_uid * 100 + activity_id; category_uid is the class's;
metadata.version is "1.7.0"; metadata.product is present. A JSON null counts as a
problem.
"""

import argparse
import copy
import datetime
import importlib.util
import ipaddress
import json
import math
import os
import re
import subprocess
import sys

ECS_VERSION = "9.4.0"
ECS_NPM_PACKAGE = "@elastic/ecs"
OCSF_VERSION = "1.7.0"
OCSF_PYPI_PACKAGE = "pydantic-ocsf"
OCSF_PYPI_VERSION = "3.0.0"  # the version scripts/setup.sh pins; any with v1_7_0.json works
OCSF_SCHEMA_FILE = "v" + OCSF_VERSION.replace(".", "_") + ".json"
OCSF_CLASS_UIDS = [1007, 1001, 4001, 4003, 2004]


class SchemaUnavailable(Exception):
    """A schema package is missing or is not the pinned version."""


class SchemaError(Exception):
    """The schema data could not be resolved."""


# ---------------------------------------------------------------------------- helpers

def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v)


def is_ip(v):
    if not isinstance(v, str):
        return False
    try:
        ipaddress.ip_address(v)
        return True
    except ValueError:
        return False


RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))$"
)


def is_rfc3339(v):
    if not isinstance(v, str):
        return False
    m = RFC3339.match(v)
    if not m:
        return False
    y, mo, d, h, mi, s = (int(x) for x in m.group(1, 2, 3, 4, 5, 6))
    try:
        datetime.datetime(y, mo, d, h, mi, min(s, 59))  # allow a leap second
    except ValueError:
        return False
    if s > 60:
        return False
    if m.group(9) and (int(m.group(10)) > 23 or int(m.group(11)) > 59):
        return False
    return True


def kind_of(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def short(v):
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


_regex_cache = {}


def regex(pattern):
    if pattern not in _regex_cache:
        try:
            _regex_cache[pattern] = re.compile(pattern)
        except re.error:
            _regex_cache[pattern] = None
    return _regex_cache[pattern]



# ------------------------------------------------------------------------ ECS schema

ECS_NODE_SCRIPT = r"""
const path = require("path");
const dir = path.resolve(process.argv[1]);
const pkg = require(path.join(dir, "package.json"));
const ecs = require(dir);
process.stdout.write(JSON.stringify({
  package: pkg.name, package_version: pkg.version, version: ecs.EcsVersion, flat: ecs.EcsFlat,
}));
"""


def ecs_package_dir(given=None):
    if given:
        return given
    tools = os.environ.get("BUILDWATCH_TOOLS") or "/opt/buildwatch-tools"
    return os.path.join(tools, "npm", "node_modules", *ECS_NPM_PACKAGE.split("/"))


def load_ecs_schema(package_dir=None):
    """The ECS field table, from the installed npm package @elastic/ecs."""
    pdir = ecs_package_dir(package_dir)
    hint = (
        f"the ECS schema comes from the npm package {ECS_NPM_PACKAGE}@{ECS_VERSION} "
        f"(scripts/setup.sh installs it under $BUILDWATCH_TOOLS/npm; or pass --ecs-package DIR)"
    )
    if not os.path.isfile(os.path.join(pdir, "package.json")):
        raise SchemaUnavailable(f"{ECS_NPM_PACKAGE} is not installed at {pdir}: {hint}")
    try:
        run = subprocess.run(
            ["node", "-e", ECS_NODE_SCRIPT, pdir], capture_output=True, text=True, check=False
        )
    except OSError as e:
        raise SchemaUnavailable(f"cannot run node to read {pdir} ({e}): {hint}") from None
    if run.returncode != 0:
        raise SchemaUnavailable(f"node could not load {pdir}: {run.stderr.strip()[-500:]}")
    data = json.loads(run.stdout)
    if data.get("package") != ECS_NPM_PACKAGE or not isinstance(data.get("flat"), dict):
        raise SchemaUnavailable(f"{pdir} is not the {ECS_NPM_PACKAGE} package (no EcsFlat): {hint}")
    if data.get("version") != ECS_VERSION:
        raise SchemaUnavailable(
            f"{pdir} is {ECS_NPM_PACKAGE} {data.get('package_version')} with ECS "
            f"{data.get('version')}, not the pinned ECS {ECS_VERSION}: {hint}"
        )
    flat = data["flat"]
    fields = {}
    expected_event_types = {}
    for name in sorted(flat):
        src = flat[name]
        if src.get("flat_name", name) != name:
            raise SchemaError(f"ECS {name}: flat_name mismatch ({src.get('flat_name')})")
        out = {"type": src["type"]}
        if src.get("normalize"):
            out["normalize"] = list(src["normalize"])
        if "allowed_values" in src:
            out["allowed_values"] = [v["name"] for v in src["allowed_values"]]
            if name == "event.category":
                for v in src["allowed_values"]:
                    expected_event_types[v["name"]] = list(v.get("expected_event_types", []))
        for key in ("object_type", "pattern"):
            if key in src:
                out[key] = src[key]
        fields[name] = out
    if not expected_event_types:
        raise SchemaError("ECS event.category has no allowed_values/expected_event_types")
    return {
        "source": f"npm {ECS_NPM_PACKAGE} {data.get('package_version')} at {pdir}",
        "version": data["version"],
        "fields": fields,
        "expected_event_types": expected_event_types,
    }


# -------------------------------------------------------------------------------- ECS

ECS_STRING = {"keyword", "constant_keyword", "wildcard", "match_only_text", "text"}
ECS_INT_RANGE = {
    "long": (-(2**63), 2**63 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-(2**7), 2**7 - 1),
    "unsigned_long": (0, 2**64 - 1),
}
ECS_FLOAT = {"float", "double", "scaled_float", "half_float"}
ECS_OBJECT = {"object", "nested", "flattened"}
ECS_CUSTOM = ("buildwatch",)


class EcsValidator:
    def __init__(self, schema):
        self.schema = schema
        self.version = schema["version"]
        self.fields = schema["fields"]
        self.expected = schema["expected_event_types"]
        self.prefixes = set()
        for name in self.fields:
            parts = name.split(".")
            for i in range(1, len(parts)):
                self.prefixes.add(".".join(parts[:i]))

    def validate(self, rec):
        self.problems = []
        self.seen = {}
        if not isinstance(rec, dict):
            return [("<record>", f"record is a JSON {kind_of(rec)}, not an object")]
        self.walk(rec, "")
        self.check_record()
        return self.problems

    def err(self, path, msg):
        self.problems.append((path, msg))

    def walk(self, obj, prefix):
        for key, value in obj.items():
            path = f"{prefix}.{key}" if prefix else key
            self.visit(path, value)

    def visit(self, path, value):
        top = path.split(".", 1)[0]
        if top in ECS_CUSTOM:
            return  # custom namespace, not ECS
        if path.startswith("labels."):
            if path in self.seen:
                self.err(path, "field given twice (nested and dotted)")
            self.seen[path] = value
            if not isinstance(value, str):
                self.err(path, f"labels.* values are keyword: expected string, got {kind_of(value)}")
            return
        field = self.fields.get(path)
        if field is None:
            if isinstance(value, dict) and path in self.prefixes:
                self.walk(value, path)
            elif isinstance(value, dict) and value:
                self.err(path, "not an ECS field (no ECS field starts with this path)")
            else:
                self.err(path, "not an ECS field")
            return
        if path in self.seen:
            self.err(path, "field given twice (nested and dotted)")
        self.seen[path] = value
        ftype = field["type"]
        if value is None:
            self.err(path, f"null value (omit the field instead); ECS type {ftype}")
            return
        if ftype in ECS_OBJECT:
            self.visit_object(path, value, field)
            return
        if ftype == "geo_point":
            if not self.is_geo_point(value):
                self.err(path, f"expected geo_point ({{lat, lon}} object or \"lat,lon\"), got {short(value)}")
            return
        is_array_field = "array" in field.get("normalize", [])
        if isinstance(value, list):
            if not is_array_field:
                self.err(path, "array given, but the ECS field is not an array (no normalize: array)")
                return
            if not value:
                self.err(path, "empty array (omit the field instead)")
            for i, v in enumerate(value):
                self.check_scalar(f"{path}[{i}]", v, field)
        else:
            if is_array_field:
                self.err(path, f"ECS normalize is array: expected a JSON array, got {kind_of(value)}")
            self.check_scalar(path, value, field)

    def visit_object(self, path, value, field):
        ftype = field["type"]
        if isinstance(value, list):
            if not all(isinstance(v, dict) for v in value):
                self.err(path, f"ECS type {ftype}: expected an object or an array of objects, got {short(value)}")
                return
            items = value
        elif isinstance(value, dict):
            items = [value]
        else:
            self.err(path, f"ECS type {ftype}: expected an object, got {kind_of(value)}")
            return
        if ftype == "flattened":
            return
        for item in items:
            if "object_type" in field:
                for k, v in item.items():
                    self.check_scalar(f"{path}.{k}", v, {"type": field["object_type"]})
            elif path in self.prefixes:
                self.walk(item, path)
            # else: a free-form object (e.g. entity.raw) takes anything

    @staticmethod
    def is_geo_point(v):
        if isinstance(v, dict):
            return set(v) == {"lat", "lon"} and is_number(v["lat"]) and is_number(v["lon"])
        if isinstance(v, str):
            return True
        return isinstance(v, list) and len(v) == 2 and all(is_number(x) for x in v)

    def check_scalar(self, path, v, field):
        t = field["type"]
        if v is None:
            self.err(path, f"null value; ECS type {t}")
            return
        ok = True
        if t in ECS_STRING:
            ok = isinstance(v, str)
            want = "string"
        elif t in ECS_INT_RANGE:
            lo, hi = ECS_INT_RANGE[t]
            want = f"integer ({t})"
            ok = is_int(v)
            if ok and not lo <= v <= hi:
                self.err(path, f"{v} is out of range for ECS type {t}")
                return
        elif t in ECS_FLOAT:
            ok = is_number(v)
            want = f"number ({t})"
        elif t == "boolean":
            ok = isinstance(v, bool)
            want = "boolean"
        elif t == "ip":
            ok = is_ip(v)
            want = "IPv4/IPv6 address string"
        elif t == "date":
            ok = is_rfc3339(v)
            want = "RFC 3339 date-time string"
        else:
            ok = not isinstance(v, (dict, list))
            want = f"scalar ({t})"
        if not ok:
            self.err(path, f"expected {want}, got {short(v)}")
            return
        if "allowed_values" in field and v not in field["allowed_values"]:
            self.err(path, f"{short(v)} is not an allowed value ({', '.join(field['allowed_values'])})")
        if "pattern" in field and isinstance(v, str):
            rx = regex(field["pattern"])
            if rx and not rx.search(v):
                self.err(path, f"{short(v)} does not match pattern {field['pattern']}")

    def check_record(self):
        seen = self.seen
        for name in ("@timestamp", "ecs.version", "event.kind", "event.type"):
            if name not in seen:
                self.err(name, "required field missing")
        if "ecs.version" in seen and seen["ecs.version"] != self.version:
            self.err("ecs.version", f"{short(seen['ecs.version'])} is not the pinned ECS version {self.version}")
        kind = seen.get("event.kind")
        if kind == "event" and "event.category" not in seen:
            self.err("event.category", 'required field missing (event.kind is "event")')
        cats = seen.get("event.category")
        types = seen.get("event.type")
        if isinstance(cats, str):
            cats = [cats]
        if isinstance(types, str):
            types = [types]
        if isinstance(cats, list) and isinstance(types, list):
            cats = [c for c in cats if isinstance(c, str) and c in self.expected]
            if cats:
                for t in types:
                    if isinstance(t, str) and not any(t in self.expected[c] for c in cats):
                        allowed = sorted({x for c in cats for x in self.expected[c]})
                        self.err(
                            "event.type",
                            f"{short(t)} is not an expected event.type for event.category "
                            f"{', '.join(cats)} (expected: {', '.join(allowed)})",
                        )


# ----------------------------------------------------------------------- OCSF schema

# The OCSF 1.7.0 profiles (ocsf/ocsf-schema profiles/*.json), as facts: the attributes
# each one adds to the classes/objects that $include it, with their requirement.
# pydantic-ocsf's schema file has the `$include`s but not these files. Extra keys are
# given where they change validation: an enum a profile extends, deprecation.
_DEPRECATED = {"@deprecated": {}}
OCSF_PROFILES = {
    "cloud": ("Cloud", {"api": "optional", "cloud": "required"}),
    "container": ("Container", {"container": "recommended", "namespace_pid": "recommended"}),
    "data_classification": ("Data Classification", {
        "data_classification": ("recommended", _DEPRECATED),  # since 1.4.0: data_classifications
        "data_classifications": "recommended",
    }),
    "datetime": ("Date/Time", {}),  # adds the *_dt siblings of every timestamp_t attribute
    "host": ("Host", {"actor": "optional", "device": "recommended"}),
    "incident": ("Incident", {
        "assignee": "optional", "assignee_group": "optional", "impact": "recommended",
        "impact_id": "recommended", "impact_score": "recommended",
        "is_suspected_breach": "optional", "priority": "optional", "priority_id": "recommended",
        "src_url": "recommended", "ticket": ("optional", _DEPRECATED),  # since 1.5.0: tickets
        "tickets": "optional", "verdict": "recommended", "verdict_id": "recommended",
    }),
    "load_balancer": ("Load Balancer", {"load_balancer": "recommended"}),
    "network_proxy": ("Network Proxy", {
        "proxy_connection_info": "recommended", "proxy_endpoint": "optional",
        "proxy_http_request": "optional", "proxy_http_response": "optional",
        "proxy_tls": "recommended", "proxy_traffic": "recommended",
    }),
    "osint": ("OSINT", {"osint": "required"}),
    "security_control": ("Security Control", {
        "action": "optional",
        "action_id": ("recommended", {"enum": {
            "0": {"caption": "Unknown"}, "1": {"caption": "Allowed"}, "2": {"caption": "Denied"},
            "3": {"caption": "Observed"}, "4": {"caption": "Modified"}, "99": {"caption": "Other"},
        }}),
        "attacks": "optional", "authorizations": "optional", "confidence": "optional",
        "confidence_id": "recommended", "confidence_score": "optional", "disposition": "optional",
        "disposition_id": "recommended", "firewall_rule": "optional", "is_alert": "recommended",
        "malware": "optional", "malware_scan_info": "optional", "policy": "optional",
        "risk_details": "optional", "risk_level": "optional", "risk_level_id": "optional",
        "risk_score": "optional",
    }),
    "trace": ("Trace", {"trace": "recommended"}),
}


def ocsf_profile_files():
    """OCSF_PROFILES in the shape of the schema's profiles/*.json files."""
    out = {}
    for name, (caption, attrs) in OCSF_PROFILES.items():
        attributes = {}
        for aname, spec in attrs.items():
            req, extra = (spec, {}) if isinstance(spec, str) else spec
            attributes[aname] = {"requirement": req, **copy.deepcopy(extra)}
        out[name] = {"name": name, "caption": caption, "meta": "profile", "attributes": attributes}
    return out


def ocsf_schema_path(given=None):
    if given:
        return given
    hint = (
        f"the OCSF {OCSF_VERSION} schema comes from the PyPI package "
        f"{OCSF_PYPI_PACKAGE}=={OCSF_PYPI_VERSION}, which scripts/setup.sh installs in "
        f"/opt/buildwatch-tools/venv: run this script with /opt/buildwatch-tools/venv/bin/python, "
        f"or pass --ocsf-schema PATH/TO/ocsf/schemas/{OCSF_SCHEMA_FILE}"
    )
    spec = importlib.util.find_spec("ocsf")
    if spec is None or not spec.submodule_search_locations:
        raise SchemaUnavailable(
            f"{OCSF_PYPI_PACKAGE} is not installed in the Python running this script "
            f"({sys.executable}); {hint}"
        )
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, "schemas", OCSF_SCHEMA_FILE)
        if os.path.isfile(path):
            return path
    raise SchemaUnavailable(
        f"the installed `ocsf` package ({', '.join(spec.submodule_search_locations)}) has no "
        f"schemas/{OCSF_SCHEMA_FILE}; is it {OCSF_PYPI_PACKAGE}? {hint}"
    )


def ocsf_package_version():
    try:
        import importlib.metadata

        return importlib.metadata.version(OCSF_PYPI_PACKAGE)
    except Exception:  # noqa: BLE001 - informative only
        return None


def load_ocsf_raw(path):
    """pydantic-ocsf's schema file as the raw schema (source layout) compile_ocsf takes."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    try:
        raw = {
            "version": doc["version"],
            "categories": doc["categories_meta"]["attributes"],
            "dictionary": doc["dictionary"],
            "events": doc["events"],
            "objects": doc["objects"],
            "profiles": ocsf_profile_files(),
            "includes": {},
        }
    except (KeyError, TypeError) as e:
        raise SchemaError(f"{path}: not a pydantic-ocsf schema file (no {e})") from None
    if raw["version"] != OCSF_VERSION:
        raise SchemaUnavailable(f"{path} is OCSF {raw['version']}, not the pinned OCSF {OCSF_VERSION}")
    return raw


RANK = {None: 0, "optional": 1, "recommended": 2, "required": 3}
UNRANK = {v: k for k, v in RANK.items()}


def deep_merge(dest, source):
    for key, value in source.items():
        if key in dest and isinstance(dest[key], dict) and isinstance(value, dict):
            deep_merge(dest[key], value)
        else:
            dest[key] = value


def upgrade_attribute_profiles(item):
    for attr in item.get("attributes", {}).values():
        if isinstance(attr, dict) and "profile" in attr:
            p = attr.pop("profile")
            attr["profiles"] = None if p is None else [p]


def merge_attribute_detail(dest, source):
    for key, value in source.items():
        if key not in dest:
            dest[key] = value
        elif value == dest[key]:
            pass
        elif key == "profiles":
            if value is None:
                dest["profiles"] = None
            else:
                dest["profiles"] = sorted(set(dest["profiles"] or []) | set(value))
        elif key == "requirement" and source.get("profiles") is not None and "profiles" in dest:
            dest["requirement"] = UNRANK[max(RANK[dest["requirement"]], RANK[value])]
        elif isinstance(dest[key], dict) and isinstance(value, dict):
            deep_merge(dest[key], value)
        else:
            dest[key] = value


def merge_attributes(dest_attrs, source_attrs):
    for name, attr in source_attrs.items():
        if name in dest_attrs:
            merge_attribute_detail(dest_attrs[name], attr)
        else:
            dest_attrs[name] = attr


class OcsfCompiler:
    """Resolves a raw OCSF schema (the ocsf/ocsf-schema source layout, held in memory)
    as the reference compiler does, for the base schema:

      * an attribute's "profile" becomes "profiles" ([name], or null = "not affected by
        profiles");
      * "attributes": {"$include": [...]} merges the included files (profiles/*.json,
        includes/*.json) under the item's own attributes; attributes coming from a
        profile get "profiles": [profile]; profile "annotations" fill missing keys; an
        attribute's own "$include" (enum files) is deep-merged under it;
      * dictionary attribute types that are not dictionary types are objects
        (type object_t, object_type NAME);
      * "extends" chains (classes up to base_event, objects e.g. to _entity) are
        flattened: a copy of the parent with the child's attribute details merged on top
        (enum maps deep-merged, "profiles": null clears, a requirement set by two
        profiles is the stronger one);
      * classes get uid = category uid * 1000 + class uid, and enums for class_uid,
        category_uid and type_uid (class_uid * 100 + each activity_id);
      * the observable object's type_id enum gets every observable type_id the schema
        defines;
      * a timestamp_t attribute T gets a T_dt sibling (datetime_t, optional, profile
        "datetime");
      * attributes with no requirement are optional; finally each attribute is the
        dictionary definition with the class/object definition deep-merged on top.
    """

    def __init__(self, raw):
        raw = copy.deepcopy(raw)
        self.version = raw["version"]
        self.categories = raw["categories"]
        self.dictionary = raw["dictionary"]
        self.types = self.dictionary["types"]["attributes"]
        self.dict_attrs = self.dictionary["attributes"]
        self.classes = raw["events"]
        self.objects = raw["objects"]
        self.profiles = raw["profiles"]
        self.includes = dict(raw.get("includes", {}))
        for name, prof in self.profiles.items():
            self.includes.setdefault(f"profiles/{name}.json", prof)
        for items in (self.classes, self.objects):
            for name, item in items.items():
                if item.get("name") != name:
                    raise SchemaError(f"{name}: name {item.get('name')!r} differs")
                upgrade_attribute_profiles(item)

    # -- $include ---------------------------------------------------------------------
    def include(self, rel, by):
        if rel not in self.includes:
            raise SchemaError(f"{by}: $include {rel} is not available")
        return self.includes[rel]

    def resolve_includes(self, item):
        attrs = item.setdefault("attributes", {})
        item["_included"] = []
        if "$include" in attrs:
            value = attrs.pop("$include")
            for rel in [value] if isinstance(value, str) else value:
                inc = self.include(rel, item["name"])
                item["_included"].append(rel)
                merged = copy.deepcopy(inc.get("attributes", {}))
                if inc.get("meta") == "profile":
                    for a in merged.values():
                        a["profiles"] = [inc["name"]]
                for a in merged.values():
                    for k, v in inc.get("annotations", {}).items():
                        a.setdefault(k, v)
                merge_attributes(merged, item["attributes"])
                item["attributes"] = merged
        for name, attr in list(item["attributes"].items()):
            if isinstance(attr, dict) and "$include" in attr:
                rel = attr.pop("$include")
                new = copy.deepcopy(self.include(rel, f"{item['name']}.{name}"))
                deep_merge(new, attr)
                item["attributes"][name] = new

    # -- extends --------------------------------------------------------------------
    def resolve_extends(self, items, name, done):
        if name in done:
            return
        item = items[name]
        parent = item.get("extends")
        if parent:
            if parent not in items:
                raise SchemaError(f"{name} extends undefined {parent}")
            self.resolve_extends(items, parent, done)
            new = copy.deepcopy(items[parent])
            new_attrs = new.get("attributes", {})
            for key, value in item.items():
                if key == "attributes":
                    merge_attributes(new_attrs, value)
                    new["attributes"] = new_attrs
                elif key == "profiles":
                    new["profiles"] = sorted(set(new.get("profiles", [])) | set(value))
                elif key == "_included":
                    new["_included"] = new.get("_included", []) + value
                else:
                    new[key] = value
            new["_chain"] = items[parent].get("_chain", [parent]) + [name]
            items[name] = new
        else:
            item["_chain"] = [name]
        done.add(name)

    # -- driver ---------------------------------------------------------------------
    def observable_type_ids(self):
        """The observable object's type_id values, gathered (as the compiler does) from
        dictionary types and attributes, objects, and class/object attributes."""
        ids = {}

        def add(type_id, caption):
            if str(type_id) in ids:
                raise SchemaError(f"observable type_id {type_id} collision ({caption})")
            ids[str(type_id)] = {"caption": caption}

        def caption_of(items, item):
            while "caption" not in item and item.get("extends") in items:
                item = items[item["extends"]]
            return item.get("caption", item.get("name", ""))

        for kind, items in (("Class", self.classes), ("Object", self.objects)):
            for item in items.values():
                caption = caption_of(items, item)
                if kind == "Object" and "observable" in item:
                    add(item["observable"], caption)
                for aname, attr in item.get("attributes", {}).items():
                    if "observable" in attr:
                        add(attr["observable"], f"{caption} {kind}: {aname}")
                for path, type_id in item.get("observables", {}).items():
                    add(type_id, f"{caption} {kind}: {path}")
        for table in (self.types, self.dict_attrs):
            for detail in table.values():
                if "observable" in detail:
                    add(detail["observable"], detail.get("caption", ""))
        return ids

    def compile(self):
        for item in list(self.classes.values()) + list(self.objects.values()):
            self.resolve_includes(item)
        observable_ids = self.observable_type_ids()

        for attr in self.dict_attrs.values():
            if attr["type"] not in self.types:
                if attr["type"] not in self.objects:
                    raise SchemaError(f"dictionary type {attr['type']} undefined")
                attr["object_type"] = attr["type"]
                attr["type"] = "object_t"

        done = set()
        for name in list(self.classes):
            self.resolve_extends(self.classes, name, done)
        done = set()
        for name in list(self.objects):
            self.resolve_extends(self.objects, name, done)
        self.classes = {n: c for n, c in self.classes.items() if n == "base_event" or "uid" in c}
        self.objects = {n: o for n, o in self.objects.items() if not n.startswith("_")}
        if "observable" in self.objects:
            enum = (
                self.objects["observable"]
                .setdefault("attributes", {})
                .setdefault("type_id", {})
                .setdefault("enum", {})
            )
            for k, v in observable_ids.items():
                enum.setdefault(k, v)

        for cls in self.classes.values():
            self.enrich_class(cls)

        # datetime siblings in the dictionary
        has_dt = "datetime" in self.profiles and "datetime_t" in self.types
        if has_dt:
            for name, attr in list(self.dict_attrs.items()):
                if attr.get("type") == "timestamp_t":
                    sib = copy.deepcopy(attr)
                    sib["type"] = "datetime_t"
                    self.dict_attrs[name + "_dt"] = sib

        for name in self.objects:
            self.objects[name]["profiles"] = self.gather_profiles(name)
        for cls in self.classes.values():
            own = list(cls.get("profiles", []))
            profs = set(own)
            for aname in cls["attributes"]:
                ot = self.dict_attrs.get(aname, {}).get("object_type")
                if ot:
                    profs |= set(self.gather_profiles(ot))
            cls["_own_profiles"] = own
            cls["profiles"] = sorted(profs)

        for items in (self.objects, self.classes):
            for item in items.values():
                attrs = item["attributes"]
                if has_dt:
                    adds = {}
                    for aname, attr in attrs.items():
                        t = attr.get("type", self.dict_attrs.get(aname, {}).get("type"))
                        if t == "timestamp_t":
                            dt = copy.deepcopy(attr)
                            dt["profiles"] = ["datetime"]
                            dt["requirement"] = "optional"
                            dt["type"] = "datetime_t"
                            adds[aname + "_dt"] = dt
                    if adds:
                        attrs.update(adds)
                        if "datetime" not in item.setdefault("profiles", []):
                            item["profiles"] = sorted(item["profiles"] + ["datetime"])
                for attr in attrs.values():
                    if attr.get("requirement") is None:
                        attr["requirement"] = "optional"
                final = {}
                for aname, attr in attrs.items():
                    if aname not in self.dict_attrs:
                        raise SchemaError(f"{item['name']}.{aname}: not in dictionary")
                    new = copy.deepcopy(self.dict_attrs[aname])
                    deep_merge(new, attr)
                    if new["type"] not in self.types and new["type"] != "object_t":
                        new["object_type"] = new["type"]
                        new["type"] = "object_t"
                    final[aname] = new
                item["attributes"] = final

    def enrich_class(self, cls):
        category = self.categories.get(cls.get("category"))
        cat_uid = category["uid"] if category else 0
        uid = cat_uid * 1000 + cls.get("uid", 0)
        cls["uid"] = uid
        cls["category_uid"] = cat_uid
        cls["category_name"] = category["caption"] if category else None
        attrs = cls.setdefault("attributes", {})
        activity = attrs.get("activity_id", {}).get("enum")
        if activity is None:
            # the dictionary default applies (0 Unknown, 99 Other)
            activity = self.dict_attrs["activity_id"].get("enum", {})
        caption = cls.get("caption", "UNKNOWN")
        type_enum = {
            str(uid * 100 + int(k)): {"caption": f"{caption}: {v.get('caption', '<unknown>')}"}
            for k, v in activity.items()
        }
        type_enum[str(uid * 100)] = {"caption": f"{caption}: Unknown"}
        attrs.setdefault("type_uid", {})["enum"] = type_enum
        attrs.setdefault("class_uid", {})["enum"] = {str(uid): {"caption": caption}}
        if category:
            attrs.setdefault("category_uid", {})["enum"] = {
                str(cat_uid): {"caption": category["caption"]}
            }

    def gather_profiles(self, obj_name, seen=None):
        if seen is None:
            seen = set()
        if obj_name in seen:
            return []
        seen.add(obj_name)
        obj = self.objects[obj_name]
        profs = set(obj.get("profiles") or [])
        for aname in obj.get("attributes", {}):
            ot = self.dict_attrs.get(aname, {}).get("object_type")
            if ot:
                profs |= set(self.gather_profiles(ot, seen))
        return sorted(profs)


def _compact_attr(attr):
    out = {"requirement": attr["requirement"], "type": attr["type"]}
    if attr["type"] == "object_t":
        out["object_type"] = attr["object_type"]
    out["is_array"] = bool(attr.get("is_array", False))
    if "enum" in attr:
        out["enum"] = {
            k: v.get("caption", "")
            for k, v in sorted(
                attr["enum"].items(),
                key=lambda kv: int(kv[0]) if kv[0].lstrip("-").isdigit() else kv[0],
            )
        }
        dep = sorted(k for k, v in attr["enum"].items() if "@deprecated" in v)
        if dep:
            out["deprecated_enum"] = dep
    if attr.get("sibling"):
        out["sibling"] = attr["sibling"]
    if attr.get("profiles"):
        out["profiles"] = list(attr["profiles"])
    if "@deprecated" in attr:
        out["deprecated"] = True
    return out


def _compact_item(item, is_class):
    out = {"name": item["name"], "caption": item.get("caption", "")}
    if is_class:
        out["uid"] = item["uid"]
        out["category_uid"] = item["category_uid"]
        out["category_name"] = item["category_name"]
    out["extends"] = item.get("_chain", [item["name"]])[:-1]
    if item.get("_included"):
        out["includes"] = item["_included"]
    if is_class:
        out["class_profiles"] = item.get("_own_profiles", [])
    out["profiles"] = item.get("profiles", [])
    if item.get("constraints"):
        out["constraints"] = item["constraints"]
    if "@deprecated" in item:
        out["deprecated"] = True
    out["attributes"] = {k: _compact_attr(v) for k, v in sorted(item["attributes"].items())}
    return out


def compile_ocsf(raw, class_uids=OCSF_CLASS_UIDS, source=""):
    """The validation table: the given classes, fully resolved, and every object they
    reach; the dictionary types; the profile names."""
    c = OcsfCompiler(raw)
    c.compile()
    by_uid = {cls["uid"]: cls for n, cls in c.classes.items() if n != "base_event"}
    classes = {}
    reach = []
    for uid in class_uids:
        if uid not in by_uid:
            raise SchemaError(f"OCSF {c.version} has no class {uid}")
        cls = by_uid[uid]
        classes[str(uid)] = _compact_item(cls, True)
        reach += [a["object_type"] for a in cls["attributes"].values() if a["type"] == "object_t"]
    objects = {}
    while reach:
        name = reach.pop()
        if name in objects:
            continue
        obj = c.objects[name]
        objects[name] = _compact_item(obj, False)
        reach += [a["object_type"] for a in obj["attributes"].values() if a["type"] == "object_t"]
    types = {}
    for name, t in sorted(c.types.items()):
        out = {"caption": t.get("caption", "")}
        for k in ("type", "max_len", "range", "regex", "values"):
            if k in t:
                out[k] = t[k]
        types[name] = out
    return {
        "source": source,
        "version": c.version,
        "profiles": {n: p.get("caption", "") for n, p in sorted(c.profiles.items())},
        "types": types,
        "classes": classes,
        "objects": dict(sorted(objects.items())),
    }


def load_ocsf_schema(path=None):
    """The OCSF validation table, resolved from pydantic-ocsf's schema file."""
    given = path
    path = ocsf_schema_path(path)
    version = None if given else ocsf_package_version()
    origin = f"{OCSF_PYPI_PACKAGE} {version}" if version else "file"
    return compile_ocsf(load_ocsf_raw(path), source=f"{origin} {path} + OCSF_PROFILES")


# ------------------------------------------------------------------------------- OCSF

MIN_INT, MAX_INT = -(2**63), 2**63 - 1
MIN_LONG, MAX_LONG = -(2**127), 2**127 - 1
# timestamp_t is epoch milliseconds; flag values that look like seconds or micro/nanos
TS_MS_MIN, TS_MS_MAX = 10**11, 10**14


class OcsfValidator:
    def __init__(self, schema):
        self.schema = schema
        self.version = schema["version"]
        self.types = schema["types"]
        self.classes = schema["classes"]
        self.objects = schema["objects"]
        self.profile_names = set(schema.get("profiles", {}))

    def validate(self, rec):
        self.problems = []
        if not isinstance(rec, dict):
            return [("<record>", f"record is a JSON {kind_of(rec)}, not an object")]
        cu = rec.get("class_uid")
        if str(cu) not in self.classes or not is_int(cu):
            self.err("class_uid", f"{short(cu)} is not one of {', '.join(self.classes)}")
            return self.problems
        cls = self.classes[str(cu)]
        meta = rec.get("metadata")
        profiles = []
        if isinstance(meta, dict) and isinstance(meta.get("profiles"), list):
            for i, p in enumerate(meta["profiles"]):
                if isinstance(p, str):
                    if p not in self.profile_names:
                        self.err(f"metadata.profiles[{i}]", f"unknown profile {short(p)}")
                    profiles.append(p)
        self.profiles = set(profiles)
        self.check_item(rec, cls, "", f"class {cls['name']} ({cu})")
        act = rec.get("activity_id")
        tu = rec.get("type_uid")
        if is_int(act) and is_int(tu) and tu != cu * 100 + act:
            self.err("type_uid", f"{tu} != class_uid * 100 + activity_id = {cu * 100 + act}")
        cat = rec.get("category_uid")
        if cat is not None and cat != cls["category_uid"]:
            self.err("category_uid", f"{short(cat)} is not {cls['category_uid']} ({cls['category_name']}) for class {cu}")
        if isinstance(meta, dict):
            if "version" in meta and meta["version"] != self.version:
                self.err("metadata.version", f"{short(meta['version'])} is not the pinned OCSF version {self.version}")
            if "product" not in meta:
                if not any(p == "metadata.product" for p, _ in self.problems):
                    self.err("metadata.product", "required attribute missing")
        return self.problems

    def err(self, path, msg):
        self.problems.append((path, msg))

    def in_effect(self, attr):
        profs = attr.get("profiles")
        return not profs or any(p in self.profiles for p in profs)

    def check_item(self, obj, item, path, what):
        all_attrs = item["attributes"]
        if not all_attrs:
            return  # open-ended object ("object", used by unmapped): anything goes
        attrs = {k: v for k, v in all_attrs.items() if self.in_effect(v)}
        for key in obj:
            if key not in attrs:
                p = f"{path}.{key}" if path else key
                if key in all_attrs:
                    self.err(
                        p,
                        f"attribute of profile(s) {', '.join(all_attrs[key]['profiles'])} "
                        f"not listed in metadata.profiles",
                    )
                else:
                    self.err(p, f"not an attribute of {what}")
        for name, attr in attrs.items():
            p = f"{path}.{name}" if path else name
            if name not in obj:
                if attr["requirement"] == "required":
                    self.err(p, "required attribute missing")
                continue
            value = obj[name]
            if value is None:
                self.err(p, f"null value (omit the attribute instead); type {self.type_desc(attr)}")
                continue
            self.check_value(p, value, attr, obj)
        for kind, names in item.get("constraints", {}).items():
            present = [n for n in names if obj.get(n) is not None]
            if kind == "at_least_one" and not present:
                self.err(path or "<record>", f"constraint at_least_one of {what}: needs one of {', '.join(names)}")
            elif kind == "just_one" and len(present) != 1:
                self.err(path or "<record>", f"constraint just_one of {what}: needs exactly one of {', '.join(names)}, got {len(present)}")

    @staticmethod
    def type_desc(attr):
        t = attr["object_type"] if attr["type"] == "object_t" else attr["type"]
        return f"array of {t}" if attr["is_array"] else t

    def check_value(self, path, value, attr, parent):
        if attr["is_array"]:
            if not isinstance(value, list):
                self.err(path, f"expected {self.type_desc(attr)}, got {kind_of(value)}")
                return
            for i, v in enumerate(value):
                self.check_one(f"{path}[{i}]", v, attr, parent, i)
        else:
            self.check_one(path, value, attr, parent, None)

    def check_one(self, path, v, attr, parent, index):
        t = attr["type"]
        if v is None:
            self.err(path, f"null value; type {self.type_desc(attr)}")
            return
        if t == "object_t":
            ot = attr["object_type"]
            if not isinstance(v, dict):
                self.err(path, f"expected {ot} object, got {kind_of(v)}")
                return
            self.check_item(v, self.objects[ot], path, f"object {ot}")
            return
        if not self.check_type(path, v, t):
            return
        if "enum" in attr:
            key = str(v) if is_int(v) or isinstance(v, str) else None
            if key not in attr["enum"]:
                vals = ", ".join(f"{k} {c}" for k, c in attr["enum"].items())
                self.err(path, f"{short(v)} is not a defined enum value ({vals})")
                return
            sib = attr.get("sibling")
            if sib and isinstance(parent, dict) and parent.get(sib) is not None and v != 99:
                sv = parent[sib]
                if index is not None:
                    sv = sv[index] if isinstance(sv, list) and index < len(sv) else None
                caption = attr["enum"][key]
                if sv is not None and sv != caption:
                    sp = path.rsplit(".", 1)[0] + "." + sib if "." in path else sib
                    if index is not None:
                        sp = re.sub(r"\[\d+\]$", "", sp) + f"[{index}]"
                    self.err(sp, f"{short(sv)} does not match {path} = {v} ({caption!r})")

    def check_type(self, path, v, tname):
        tdef = self.types.get(tname, {})
        base = tdef.get("type", tname)
        sdef = self.types.get(base, {})
        want = tname if base == tname else f"{tname} ({base})"
        if base == "json_t":
            return True
        if base == "boolean_t":
            ok = isinstance(v, bool)
        elif base == "integer_t":
            ok = is_int(v) and MIN_INT <= v <= MAX_INT
        elif base == "long_t":
            ok = is_int(v) and MIN_LONG <= v <= MAX_LONG
        elif base == "float_t":
            ok = is_number(v)
        elif base == "string_t":
            ok = isinstance(v, str)
        else:
            ok = False
            want = f"{tname} (unknown base type {base})"
        if not ok:
            self.err(path, f"expected {want}, got {short(v)}")
            return False
        rng = tdef.get("range", sdef.get("range"))
        if rng and not rng[0] <= v <= rng[1]:
            self.err(path, f"{v} is outside the {tname} range {rng[0]}..{rng[1]}")
            return False
        values = tdef.get("values", sdef.get("values"))
        if values is not None and v not in values:
            self.err(path, f"{short(v)} is not one of the {tname} values {values}")
            return False
        if tname == "timestamp_t" and not TS_MS_MIN <= v < TS_MS_MAX:
            self.err(path, f"{v} does not look like epoch milliseconds (timestamp_t)")
            return False
        if base == "string_t":
            max_len = tdef.get("max_len", sdef.get("max_len"))
            if max_len and len(v) > max_len:
                self.err(path, f"longer than the {tname} max_len {max_len}")
                return False
            if tname == "ip_t":
                if not is_ip(v):
                    self.err(path, f"{short(v)} is not an IPv4/IPv6 address")
                    return False
            elif tname == "subnet_t":
                try:
                    ipaddress.ip_network(v, strict=False)
                except ValueError:
                    self.err(path, f"{short(v)} is not a subnet (CIDR)")
                    return False
            else:
                pattern = tdef.get("regex", sdef.get("regex"))
                rx = regex(pattern) if pattern else None
                if rx and not rx.search(v):
                    self.err(path, f"{short(v)} does not match the {tname} format")
                    return False
        return True


# ------------------------------------------------------------------------------ main

def load_validator(fmt, ecs_package=None, ocsf_schema=None):
    if fmt == "ecs":
        return EcsValidator(load_ecs_schema(ecs_package))
    return OcsfValidator(load_ocsf_schema(ocsf_schema))


def validate_lines(validator, lines):
    problems = []
    count = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        count += 1
        try:
            rec = json.loads(line)
        except ValueError as e:
            problems.append((n, "<record>", f"invalid JSON: {e}"))
            continue
        for path, msg in validator.validate(rec):
            problems.append((n, path, msg))
    return count, problems



def check_cases(fmt, v, good, bad):
    failures = []
    for i, rec in enumerate(good):
        probs = v.validate(rec)
        if probs:
            failures.append(f"{fmt} good record {i} rejected: {probs}")
    for i, (path, rec) in enumerate(bad):
        probs = v.validate(rec)
        if not any(p == path for p, _ in probs):
            failures.append(f"{fmt} bad record {i} not flagged at {path}: {probs}")
    return failures, f"{fmt.upper()} {v.version} ({len(good)} good, {len(bad)} bad)"


def ecs_self_test(ecs):
    ev = ecs.version
    ecs_good = [
        {
            "@timestamp": "2025-01-02T03:04:05.678Z",
            "ecs": {"version": ev},
            "event": {"kind": "event", "category": ["process"], "type": ["start"],
                      "outcome": "success", "dataset": "buildwatch.process"},
            "process": {"pid": 42, "executable": "/usr/bin/cc", "args": ["cc", "-c", "x.c"],
                        "parent": {"pid": 1}},
            "host": {"hostname": "ci-1", "ip": ["10.0.0.1", "fe80::1"]},
            "labels": {"job": "build"},
            "buildwatch": {"anything": {"goes": [1, 2]}},
        },
        {
            "@timestamp": "2025-01-02T03:04:05+02:00",
            "ecs.version": ev,
            "event.kind": "event",
            "event.category": ["network"],
            "event.type": ["connection", "start"],
            "destination": {"ip": "192.0.2.7", "port": 443},
            "network": {"transport": "tcp"},
            "dns": {"question": {"name": "example.org"},
                    "answers": [{"data": "192.0.2.7", "type": "A", "ttl": 60}]},
        },
        {
            "@timestamp": "2025-01-02T03:04:05Z",
            "ecs": {"version": ev},
            "event": {"kind": "alert", "category": ["intrusion_detection", "package"],
                      "type": ["info", "installation"], "risk_score": 73.5},
            "rule": {"name": "unexpected-egress"},
        },
    ]
    ecs_bad = [
        ("@timestamp", {"ecs": {"version": ev}, "event": {"kind": "event", "category": ["file"], "type": ["creation"]}}),
        ("event.category", {"@timestamp": "2025-01-02T03:04:05Z", "ecs": {"version": ev}, "event": {"kind": "event", "type": ["info"]}}),
        ("process.pid", {**ecs_good[0], "process": {"pid": "42"}}),
        ("process.pid", {**ecs_good[0], "process": {"pid": True}}),
        ("process.frobnicate", {**ecs_good[0], "process": {"frobnicate": 1}}),
        ("event.type", {**ecs_good[0], "event": {"kind": "event", "category": ["process"], "type": ["installation"]}}),
        ("event.category[0]", {**ecs_good[0], "event": {"kind": "event", "category": ["build"], "type": ["start"]}}),
        ("event.kind", {**ecs_good[0], "event": {"kind": "happening", "category": ["process"], "type": ["start"]}}),
        ("event.outcome", {**ecs_good[0], "event": {**ecs_good[0]["event"], "outcome": "ok"}}),
        ("event.category", {**ecs_good[0], "event": {**ecs_good[0]["event"], "category": "process"}}),
        ("process.executable", {**ecs_good[0], "process": {"executable": ["/bin/sh"]}}),
        ("destination.ip", {**ecs_good[1], "destination": {"ip": "999.1.1.1"}}),
        ("@timestamp", {**ecs_good[0], "@timestamp": "2025-01-02 03:04:05"}),
        ("labels.n", {**ecs_good[0], "labels": {"n": 3}}),
        ("event.risk_score", {**ecs_good[2], "event": {**ecs_good[2]["event"], "risk_score": "high"}}),
        ("ecs.version", {**ecs_good[0], "ecs": {"version": "1.0.0"}}),
        ("dns.answers.bogus", {**ecs_good[1], "dns": {"answers": [{"bogus": 1}]}}),
        ("host.name", {**ecs_good[0], "host": {"name": None}}),
    ]
    failures, summary = check_cases("ecs", ecs, ecs_good, ecs_bad)
    # the line-oriented driver
    count, probs = validate_lines(ecs, [json.dumps(ecs_good[0]), "", "{not json", json.dumps(ecs_bad[0][1])])
    if count != 3 or [n for n, _, _ in probs] != [3, 4]:
        failures.append(f"validate_lines: count={count} problems={probs}")
    return failures, summary


def ocsf_self_test(ocsf):
    ov = ocsf.version
    product = {"name": "buildwatch", "vendor_name": "buildwatch", "version": "0.1.0"}
    meta = {"version": ov, "product": product}
    base = {"time": 1735787045678, "severity_id": 1, "metadata": meta}
    proc = {"pid": 42, "name": "cc", "cmd_line": "cc -c x.c", "file": {"name": "cc", "type_id": 1, "path": "/usr/bin/cc"}}
    device = {"type_id": 1, "hostname": "ci-1", "ip": "10.0.0.1"}
    ocsf_good = [
        {**base, "class_uid": 1007, "category_uid": 1, "activity_id": 1, "activity_name": "Launch",
         "type_uid": 100701, "process": proc, "actor": {"process": {"pid": 1}}, "device": device,
         "unmapped": {"whatever": [1, {"x": None}]}},
        {**base, "class_uid": 1001, "category_uid": 1, "activity_id": 1, "type_uid": 100101,
         "file": {"name": "x.o", "type_id": 1, "path": "/w/x.o"}, "actor": {"process": proc}, "device": device},
        {**base, "class_uid": 4001, "category_uid": 4, "activity_id": 1, "type_uid": 400101,
         "src_endpoint": {"ip": "10.0.0.1", "port": 50000},
         "dst_endpoint": {"ip": "2001:db8::1", "port": 443, "hostname": "example.org"},
         "connection_info": {"protocol_num": 6, "direction_id": 2}},
        {**base, "class_uid": 4001, "category_uid": 4, "activity_id": 6, "type_uid": 400106,
         "metadata": {**meta, "profiles": ["host"]}, "device": device,
         "dst_endpoint": {"ip": "192.0.2.1", "port": 53}, "traffic": {"bytes_out": 120}},
        {**base, "class_uid": 4003, "category_uid": 4, "activity_id": 1, "type_uid": 400301,
         "src_endpoint": {"ip": "10.0.0.1"}, "query": {"hostname": "example.org", "type": "A"}},
        {**base, "class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401,
         "finding_info": {"uid": "f-1", "title": "unexpected egress", "analytic": {"type_id": 1, "name": "egress-policy"}},
         "metadata": {**meta, "profiles": ["host"]}, "device": device},
        # security_control profile (OCSF_PROFILES): action_id 3 "Observed" is the profile's
        {**base, "class_uid": 4001, "category_uid": 4, "activity_id": 1, "type_uid": 400101,
         "metadata": {**meta, "profiles": ["security_control"]}, "action_id": 3, "action": "Observed",
         "disposition_id": 15, "dst_endpoint": {"ip": "192.0.2.1", "port": 443}},
    ]
    ocsf_bad = [
        ("class_uid", {**ocsf_good[0], "class_uid": 1008}),
        ("process", {k: v for k, v in ocsf_good[0].items() if k != "process"}),
        ("time", {**ocsf_good[0], "time": "2025-01-02T03:04:05Z"}),
        ("time", {**ocsf_good[0], "time": 1735787045}),
        ("type_uid", {**ocsf_good[0], "type_uid": 100702}),
        ("activity_id", {**ocsf_good[0], "activity_id": 7, "type_uid": 100707}),
        ("activity_name", {**ocsf_good[0], "activity_name": "Start"}),
        ("category_uid", {**ocsf_good[0], "category_uid": 4}),
        ("metadata.version", {**ocsf_good[0], "metadata": {**meta, "version": "1.0.0"}}),
        ("metadata.product", {**ocsf_good[0], "metadata": {"version": ov}}),
        ("process.pid", {**ocsf_good[0], "process": {**proc, "pid": "42"}}),
        ("process.bogus", {**ocsf_good[0], "process": {**proc, "bogus": 1}}),
        ("bogus", {**ocsf_good[0], "bogus": 1}),
        ("dst_endpoint.port", {**ocsf_good[2], "dst_endpoint": {"ip": "192.0.2.1", "port": 70000}}),
        ("dst_endpoint.ip", {**ocsf_good[2], "dst_endpoint": {"ip": "not-an-ip"}}),
        ("<record>", {k: v for k, v in ocsf_good[2].items() if k not in ("src_endpoint", "dst_endpoint")}),
        ("finding_info", {k: v for k, v in ocsf_good[5].items() if k != "finding_info"}),
        ("device", {**ocsf_good[2], "device": device}),
        ("metadata.profiles[1]", {**ocsf_good[5], "metadata": {**meta, "profiles": ["host", "nope"]}}),
        ("process.file.type_id", {**ocsf_good[0], "process": {**proc, "file": {"name": "cc", "type_id": 42}}}),
        ("observables", {**ocsf_good[0], "observables": {"name": "x", "type_id": 1}}),
        ("severity_id", {**ocsf_good[0], "severity_id": None}),
        ("cloud", {**ocsf_good[0], "metadata": {**meta, "profiles": ["cloud"]}}),
        ("action_id", {**ocsf_good[6], "action_id": 5}),
        ("action_id", {**ocsf_good[6], "metadata": meta}),
        ("app_protocol_name", {**ocsf_good[2], "app_protocol_name": "http"}),  # OCSF 1.8.0 only
    ]
    return check_cases("ocsf", ocsf, ocsf_good, ocsf_bad)


def self_test(which="auto", ecs_package=None, ocsf_schema=None):
    """Run the ECS and/or OCSF self-tests. With "auto", a part whose schema package is
    not installed is skipped (and said so); with ecs/ocsf/all it fails."""
    failures, passed, skipped = [], [], []
    for fmt, test in (("ecs", ecs_self_test), ("ocsf", ocsf_self_test)):
        if which not in ("auto", "all", fmt):
            continue
        try:
            validator = load_validator(fmt, ecs_package, ocsf_schema)
        except SchemaUnavailable as e:
            if which == "auto":
                skipped.append(f"{fmt.upper()} SKIPPED: {e}")
                continue
            failures.append(f"{fmt} schema unavailable: {e}")
            continue
        f, summary = test(validator)
        failures += f
        passed.append(summary)
    for s in skipped:
        print("self-test:", s)
    if failures:
        for f in failures:
            print("SELF-TEST FAIL:", f)
        return 1
    if not passed:
        print("SELF-TEST FAIL: no schema package available, nothing tested")
        return 1
    print(f"self-test passed: {', '.join(passed)}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="Validate ECS / OCSF JSONL records.")
    ap.add_argument("--self-test", nargs="?", const="auto", choices=["auto", "ecs", "ocsf", "all"],
                    help="run the built-in cases (default auto: skip a part whose package is missing)")
    ap.add_argument("--dump", choices=["ecs", "ocsf"], help="print the resolved schema table as JSON")
    ap.add_argument("--ecs-package", metavar="DIR",
                    help=f"the {ECS_NPM_PACKAGE} npm package directory "
                         "(default $BUILDWATCH_TOOLS/npm/node_modules/@elastic/ecs)")
    ap.add_argument("--ocsf-schema", metavar="PATH",
                    help=f"{OCSF_PYPI_PACKAGE}'s ocsf/schemas/{OCSF_SCHEMA_FILE} "
                         "(default: found with importlib in this Python)")
    ap.add_argument("format", nargs="?", choices=["ecs", "ocsf"])
    ap.add_argument("file", nargs="?")
    args = ap.parse_args(argv)
    try:
        if args.self_test:
            return self_test(args.self_test, args.ecs_package, args.ocsf_schema)
        if args.dump:
            validator = load_validator(args.dump, args.ecs_package, args.ocsf_schema)
            json.dump(validator.schema, sys.stdout, indent=1)
            print()
            return 0
        if not args.format or not args.file:
            ap.error("give ecs|ocsf FILE.jsonl, or --self-test")
        validator = load_validator(args.format, args.ecs_package, args.ocsf_schema)
    except (SchemaUnavailable, SchemaError) as e:
        print(f"validate.py: cannot load the schema: {e}", file=sys.stderr)
        return 2
    if args.file == "-":
        count, problems = validate_lines(validator, sys.stdin)
    else:
        with open(args.file, encoding="utf-8") as f:
            count, problems = validate_lines(validator, f)
    for n, path, msg in problems:
        print(f"line {n}: {path}: {msg}")
    if problems:
        return 1
    print(f"{count} records valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())

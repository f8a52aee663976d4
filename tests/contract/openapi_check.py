#!/usr/bin/env python3
"""Checks kvmfleet's OpenAPI contract, and recorded exchanges against it.

    openapi_check.py SPEC                          structural self-check of the spec only
    openapi_check.py SPEC EXCHANGES.jsonl [--require-coverage]
    openapi_check.py SPEC --agreement CASES.jsonl  request schemas against the parser
    openapi_check.py SPEC --routes ROUTES.jsonl    the controller's route table against the spec

Each line of EXCHANGES.jsonl is one request/response pair as the controller really
answered it:

    {"method": "POST", "path_template": "/v1/vms", "path": "/v1/vms?wait=1",
     "query": {"wait": "1"}, "request_headers": {"idempotency-key": "k1"},
     "request_content_type": "application/json", "request_body": "{...}",
     "status": 202, "content_type": "application/json",
     "headers": {"location": "/v1/operations/..."}, "body": "{...}"}

(method, path_template, status, content_type and body are required; body and
request_body are the raw text.) A response is checked against the schema the spec
declares for that path, method and status; a status the spec does not declare is a
failure. Paths or methods the spec does not list are checked against
`x-undeclared-routes`, and every operation also accepts `x-server-responses`. For
successful exchanges the request is checked too: its query parameters must be
declared, and its body must match the declared request body.

With --agreement, each line of CASES.jsonl is one request body as the controller's
own parser judged it:

    {"label": "volume: size not a multiple of 512", "schema": "/components/schemas/X",
     "instance": {...}, "accepted": false, "looser": false}

and the schema at that JSON pointer must judge it the same way: valid exactly when the
parser accepted it. A case marked "looser" is a rule the contract states in prose only
(e.g. a LUN given twice): there the schema must accept what the parser refuses. A case
marked "legacy" is a stored record from before a rule of the contract, which the
controller's reader still reads (e.g. a vm.migrate result without its mode): there the
schema must refuse what the parser accepts.

With --routes, each line of ROUTES.jsonl is one row of the controller's route table:

    {"method": "POST", "pattern": "/v1/vms/{vm}/migrate", "query": ["wait"], "open": false}

Every row must be an operation of the spec and every operation a row (path parameters
compare by position, not by name), with the same query parameters, and a row is open
(needs no token) exactly when its operation declares `security: []`.

Exit status: 0 when everything holds, 1 when something does not (each finding is
printed), 2 when the inputs cannot be read.

Needs python3-yaml and python3-jsonschema (Debian 12 ships jsonschema 4.10, which has
RefResolver; newer ones use the `referencing` library; both are handled).
"""

import json
import re
import sys
from urllib.parse import quote

import jsonschema
import yaml
from jsonschema import Draft202012Validator

SPEC_URI = "urn:kvmfleet:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PATH_ITEM_KEYS = set(METHODS) | {"parameters", "summary", "description", "servers", "$ref"}
STATUS_KEY = re.compile(r"^([1-5][0-9][0-9]|[1-5]XX|default)$")


def escape_pointer_token(token):
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer_of(tokens):
    return "".join("/" + escape_pointer_token(t) for t in tokens)


class Spec:
    """The loaded document, with $ref resolution by JSON pointer."""

    def __init__(self, doc):
        self.doc = doc
        self._registry = None
        try:  # jsonschema >= 4.18
            from referencing import Registry, Resource
            from referencing.jsonschema import DRAFT202012

            self._registry = Registry().with_resource(
                SPEC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
            )
        except ImportError:
            pass
        self._validators = {}

    def lookup(self, pointer):
        """The node at a JSON pointer, or raises KeyError."""
        node = self.doc
        if pointer in ("", "#"):
            return node
        if not pointer.startswith("/"):
            raise KeyError(pointer)
        for raw in pointer[1:].split("/"):
            token = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise KeyError(pointer)
        return node

    def follow(self, node, pointer):
        """Follows a chain of $ref from node (found at pointer); returns (node, pointer)."""
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise KeyError("external or malformed $ref %r" % (ref,))
            if ref in seen:
                raise KeyError("$ref cycle through %r" % ref)
            seen.add(ref)
            pointer = ref[1:]
            node = self.lookup(pointer)
        return node, pointer

    def validator(self, pointer):
        """A Draft 2020-12 validator for the schema at pointer, $refs resolved in the spec."""
        if pointer in self._validators:
            return self._validators[pointer]
        wrapper = {"$ref": SPEC_URI + "#" + quote(pointer, safe="/~")}
        if self._registry is not None:
            v = Draft202012Validator(wrapper, registry=self._registry)
        else:
            resolver = jsonschema.RefResolver(base_uri=SPEC_URI, referrer=self.doc,
                                              store={SPEC_URI: self.doc})
            v = Draft202012Validator(wrapper, resolver=resolver)
        self._validators[pointer] = v
        return v


def schema_errors(spec, pointer, instance):
    v = spec.validator(pointer)
    out = []
    for e in sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        out.append("%s: %s" % (where, e.message))
    return out


# ---- structural self-check --------------------------------------------------------


def walk(node, tokens):
    yield node, tokens
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, tokens + [k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, tokens + [i])


def self_check(spec):
    doc = spec.doc
    problems = []

    def bad(msg):
        problems.append(msg)

    if not isinstance(doc, dict):
        return ["the spec is not a mapping"]
    if not str(doc.get("openapi", "")).startswith("3.1."):
        bad("openapi must be 3.1.x, is %r" % doc.get("openapi"))
    info = doc.get("info")
    if not isinstance(info, dict) or not isinstance(info.get("title"), str) \
            or not isinstance(info.get("version"), str):
        bad("info.title and info.version must be strings")
    paths = doc.get("paths")
    if not isinstance(paths, dict) or not paths:
        bad("paths must be a non-empty mapping")
        paths = {}

    # Every $ref resolves, and only inside this document.
    for node, tokens in walk(doc, []):
        if isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            where = pointer_of(tokens) or "/"
            if not isinstance(ref, str) or not ref.startswith("#/"):
                bad("%s: $ref %r is not a local JSON pointer" % (where, ref))
                continue
            try:
                spec.follow(node, pointer_of(tokens))
            except KeyError as e:
                bad("%s: $ref %r does not resolve (%s)" % (where, ref, e))

    schemes = (doc.get("components") or {}).get("securitySchemes") or {}

    def check_security(req, where):
        if not isinstance(req, list):
            bad("%s: security must be a list" % where)
            return
        for item in req:
            for name in (item or {}):
                if name not in schemes:
                    bad("%s: security scheme %r is not defined" % (where, name))

    if "security" in doc:
        check_security(doc["security"], "/security")

    op_ids = {}
    for path, item in paths.items():
        ppath = "/paths/" + escape_pointer_token(path)
        if not isinstance(path, str) or not path.startswith("/"):
            bad("%s: a path must start with /" % ppath)
        if not isinstance(item, dict):
            bad("%s: not a mapping" % ppath)
            continue
        for key in item:
            if key not in PATH_ITEM_KEYS and not str(key).startswith("x-"):
                bad("%s: unknown key %r" % (ppath, key))
        template_params = set(re.findall(r"\{([^}/]+)\}", path))

        def params_of(node, base):
            out = {}
            for i, p in enumerate(node.get("parameters") or []):
                try:
                    p, _ = spec.follow(p, "%s/parameters/%d" % (base, i))
                except KeyError:
                    continue  # reported by the $ref walk
                if not isinstance(p, dict) or "name" not in p or "in" not in p:
                    bad("%s/parameters/%d: needs name and in" % (base, i))
                    continue
                if "schema" not in p and "content" not in p:
                    bad("%s/parameters/%d: needs a schema" % (base, i))
                if p["in"] == "path" and p.get("required") is not True:
                    bad("%s/parameters/%d: path parameter %r must be required" % (base, i, p["name"]))
                out[(p["name"], p["in"])] = p
            return out

        path_params = params_of(item, ppath)
        methods = [m for m in item if m in METHODS]
        if not methods:
            bad("%s: no operations" % ppath)
        for m in methods:
            op = item[m]
            pop = "%s/%s" % (ppath, m)
            if not isinstance(op, dict):
                bad("%s: not a mapping" % pop)
                continue
            oid = op.get("operationId")
            if not isinstance(oid, str):
                bad("%s: operationId missing" % pop)
            elif oid in op_ids:
                bad("%s: operationId %r also used by %s" % (pop, oid, op_ids[oid]))
            else:
                op_ids[oid] = pop
            if "security" in op:
                check_security(op["security"], pop + "/security")
            all_params = dict(path_params)
            all_params.update(params_of(op, pop))
            declared_path = {n for (n, where) in all_params if where == "path"}
            for n in template_params - declared_path:
                bad("%s: path parameter {%s} is not declared" % (pop, n))
            for n in declared_path - template_params:
                bad("%s: path parameter %r is not in the path" % (pop, n))
            if "requestBody" in op:
                try:
                    rb, rbp = spec.follow(op["requestBody"], pop + "/requestBody")
                    if not isinstance(rb, dict) or not rb.get("content"):
                        bad("%s: requestBody has no content" % rbp)
                except KeyError:
                    pass
            responses = op.get("responses")
            if not isinstance(responses, dict) or not responses:
                bad("%s: no responses" % pop)
                continue
            for status, resp in responses.items():
                prp = "%s/responses/%s" % (pop, escape_pointer_token(status))
                if not isinstance(status, str) or not STATUS_KEY.match(status):
                    bad("%s: response key %r must be a quoted status code" % (prp, status))
                try:
                    resp, _ = spec.follow(resp, prp)
                except KeyError:
                    continue
                if not isinstance(resp, dict) or not isinstance(resp.get("description"), str):
                    bad("%s: a response needs a description" % prp)

    for ext in ("x-server-responses", "x-undeclared-routes"):
        if not isinstance(doc.get(ext), dict):
            bad("/%s is missing" % ext)

    # Every schema is a valid Draft 2020-12 schema, and every media type has one.
    for node, tokens in walk(doc, []):
        if not tokens:
            continue
        if tokens[-1] == "schema" and isinstance(node, dict) and len(tokens) >= 2 \
                and tokens[-2] != "properties":
            try:
                Draft202012Validator.check_schema(node)
            except jsonschema.SchemaError as e:
                bad("%s: invalid schema: %s" % (pointer_of(tokens), e.message))
        if len(tokens) >= 2 and tokens[-2] == "content" and isinstance(node, dict) \
                and "schema" not in node:
            bad("%s: media type without a schema" % pointer_of(tokens))
    for name, schema in ((doc.get("components") or {}).get("schemas") or {}).items():
        try:
            Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            bad("/components/schemas/%s: invalid schema: %s" % (name, e.message))
    return problems


# ---- exchanges --------------------------------------------------------------------


def coerce_query_value(value, schema):
    """Query values are text; turn them into what the parameter's schema describes."""
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "integer" in types and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    if "boolean" in types and value in ("true", "false"):
        return value == "true"
    return value


def operation_parameters(spec, path, method):
    item = spec.doc["paths"][path]
    out = {}
    for base, node in (("/paths/%s" % escape_pointer_token(path), item),
                       ("/paths/%s/%s" % (escape_pointer_token(path), method), item[method])):
        for i, p in enumerate(node.get("parameters") or []):
            p, pp = spec.follow(p, "%s/parameters/%d" % (base, i))
            out[(p["name"].lower() if p["in"] == "header" else p["name"], p["in"])] = (p, pp)
    return out


def parse_json_text(text):
    try:
        return True, json.loads(text)
    except (TypeError, ValueError):
        return False, None


def check_request(spec, path, method, rec, fail):
    op = spec.doc["paths"][path][method]
    params = operation_parameters(spec, path, method)
    for key, value in (rec.get("query") or {}).items():
        found = params.get((key, "query"))
        if not found:
            fail("query parameter %r was accepted but is not declared" % key)
            continue
        p, pp = found
        for msg in schema_errors(spec, pp + "/schema", coerce_query_value(str(value), p["schema"])):
            fail("query parameter %r=%r: %s" % (key, value, msg))
    actual = str(rec.get("path") or "").split("?", 1)[0]
    if actual:
        names = re.findall(r"\{([^}/]+)\}", path)
        pattern = "^" + re.sub(r"\\\{[^}/]+\\\}", "([^/]+)", re.escape(path)) + "$"
        m = re.match(pattern, actual)
        if not m:
            fail("path %r does not match the template %r" % (actual, path))
        else:
            for name, value in zip(names, m.groups()):
                found = params.get((name, "path"))
                if found:
                    for msg in schema_errors(spec, found[1] + "/schema", value):
                        fail("path parameter %s=%r: %s" % (name, value, msg))
    headers = {k.lower(): v for k, v in (rec.get("request_headers") or {}).items()}
    for (name, where), (p, pp) in params.items():
        if where == "header" and name in headers:
            for msg in schema_errors(spec, pp + "/schema", headers[name]):
                fail("header %s: %s" % (p["name"], msg))
    if "request_body" not in rec:
        return  # a record that does not describe its request
    body = rec.get("request_body")
    has_body = isinstance(body, str) and body != ""
    if "requestBody" not in op:
        if has_body:
            fail("a request body was accepted but the operation declares none")
        return
    rb, rbp = spec.follow(op["requestBody"], "/paths/%s/%s/requestBody"
                          % (escape_pointer_token(path), method))
    if not has_body:
        if rb.get("required"):
            fail("the request had no body but the contract requires one")
        return
    media = (rec.get("request_content_type") or "application/json").split(";")[0].strip().lower()
    content = rb.get("content") or {}
    if media not in content:
        media = "application/json"  # the controller reads any accepted body as JSON
    if media not in content:
        fail("request media type %r is not declared" % media)
        return
    if media == "application/octet-stream":
        # Bytes, taken as they are (an image's data): nothing to parse, only declared.
        return
    ok, parsed = parse_json_text(body)
    if not ok:
        fail("a request body that is not JSON was accepted")
        return
    for msg in schema_errors(spec, "%s/content/%s/schema" % (rbp, escape_pointer_token(media)), parsed):
        fail("request body: %s" % msg)


def check_exchange(spec, rec, fail):
    for field in ("method", "path_template", "status", "content_type", "body"):
        if field not in rec:
            fail("record lacks %r" % field)
            return None
    doc = spec.doc
    method = str(rec["method"]).lower()
    path = rec["path_template"]
    status = str(rec["status"])
    paths = doc.get("paths") or {}
    server = (doc.get("x-server-responses") or {}).get("responses") or {}
    undeclared = doc.get("x-undeclared-routes") or {}
    op_key = None
    if path not in paths:
        responses, base = undeclared.get("path") or {}, "/x-undeclared-routes/path"
    elif method not in paths[path] or method not in METHODS:
        responses, base = undeclared.get("method") or {}, "/x-undeclared-routes/method"
    else:
        op_key = (path, method)
        responses = paths[path][method].get("responses") or {}
        base = "/paths/%s/%s/responses" % (escape_pointer_token(path), method)
    if status in responses:
        resp_node, resp_ptr = responses[status], "%s/%s" % (base, status)
    elif status[0] + "XX" in responses:
        resp_node, resp_ptr = responses[status[0] + "XX"], "%s/%sXX" % (base, status[0])
    elif "default" in responses:
        resp_node, resp_ptr = responses["default"], base + "/default"
    elif status in server:
        resp_node, resp_ptr = server[status], "/x-server-responses/responses/" + status
    else:
        fail("status %s is not declared (declared: %s)" % (status, ", ".join(sorted(responses))))
        return op_key
    resp, resp_ptr = spec.follow(resp_node, resp_ptr)

    got_headers = {k.lower(): v for k, v in (rec.get("headers") or {}).items()}
    for hname, hnode in (resp.get("headers") or {}).items():
        h, hp = spec.follow(hnode, "%s/headers/%s" % (resp_ptr, escape_pointer_token(hname)))
        value = got_headers.get(hname.lower())
        if value is None:
            if h.get("required"):
                fail("response header %s is required but missing" % hname)
            continue
        for msg in schema_errors(spec, hp + "/schema", value):
            fail("response header %s: %s" % (hname, msg))

    content = resp.get("content")
    body = rec["body"] if isinstance(rec["body"], str) else json.dumps(rec["body"])
    media = (rec["content_type"] or "").split(";")[0].strip().lower()
    if not content:
        if body:
            fail("the response has a body but the contract declares none")
        return op_key
    if media not in content:
        fail("content type %r is not declared (declared: %s)" % (media, ", ".join(content)))
        return op_key
    schema_ptr = "%s/content/%s/schema" % (resp_ptr, escape_pointer_token(media))
    if media == "application/json" or media.endswith("+json"):
        ok, instance = parse_json_text(body)
        if not ok:
            fail("the body is not valid JSON: %r" % body[:200])
            return op_key
    else:
        instance = body
    for msg in schema_errors(spec, schema_ptr, instance):
        fail("body %s" % msg)
    if op_key and status.startswith("2"):
        check_request(spec, path, method, rec, fail)
    return op_key


def check_agreement(spec, lines):
    """Each case's schema must accept exactly what the controller's parser accepted."""
    failures = 0
    count = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        count += 1
        try:
            case = json.loads(line)
            pointer = case["schema"]
            accepted = bool(case["accepted"])
            instance = case["instance"]
            spec.lookup(pointer)
        except (ValueError, KeyError, TypeError) as e:
            print("FAIL case %d: malformed case: %s" % (n, e))
            failures += 1
            continue
        label = case.get("label", "")
        errors = schema_errors(spec, pointer, instance)
        valid = not errors
        if case.get("looser"):
            if not valid or accepted:
                print("FAIL case %d (%s): marked looser, but the schema %s it and the parser %s it"
                      % (n, label, "accepts" if valid else "refuses",
                         "accepts" if accepted else "refuses"))
                failures += 1
            continue
        if case.get("legacy"):
            if valid or not accepted:
                print("FAIL case %d (%s): marked legacy, but the schema %s it and the parser %s it"
                      % (n, label, "accepts" if valid else "refuses",
                         "accepts" if accepted else "refuses"))
                failures += 1
            continue
        if valid != accepted:
            print("FAIL case %d (%s): the parser %s it, the schema %s it%s"
                  % (n, label, "accepts" if accepted else "refuses",
                     "accepts" if valid else "refuses",
                     (": " + "; ".join(errors)) if errors else ""))
            failures += 1
    print("openapi_check: %d cases, %d disagreements" % (count, failures))
    return 1 if failures else 0


def check_routes(spec, lines):
    """The route table and the spec's operations must be the same set, row for row."""
    def shape(path):
        return re.sub(r"\{[^}]*\}", "{}", path)

    failures = []
    operations = {}
    for path, item in spec.doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            params = operation_parameters(spec, path, method)
            query = sorted(name for (name, where) in params if where == "query")
            operations[(method.upper(), shape(path))] = (path, query, op.get("security") == [])
    rows = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = (str(row["method"]).upper(), shape(row["pattern"]))
            query = sorted(row["query"])
            is_open = bool(row["open"])
        except (ValueError, KeyError, TypeError) as e:
            failures.append("row %d: malformed: %s" % (n, e))
            continue
        label = "%s %s" % (key[0], row["pattern"])
        if key in rows:
            failures.append("%s: a second row for %s %s" % (label, key[0], rows[key]))
            continue
        rows[key] = row["pattern"]
        if key not in operations:
            failures.append("%s: a route the spec does not declare" % label)
            continue
        path, declared_query, declared_open = operations[key]
        if query != declared_query:
            failures.append("%s: accepts query %s, the spec declares %s for %s %s"
                            % (label, query, declared_query, key[0], path))
        if is_open != declared_open:
            failures.append("%s: %s, the spec's %s %s %s"
                            % (label, "needs no token" if is_open else "needs a token", key[0], path,
                               "has security: []" if declared_open else "needs a token"))
    for key, (path, _, _) in sorted(operations.items()):
        if key not in rows:
            failures.append("%s %s: declared by the spec, but no route serves it" % (key[0], path))
    for f in failures:
        print("FAIL " + f)
    print("openapi_check: %d routes, %d operations, %d disagreements"
          % (len(rows), len(operations), len(failures)))
    return 1 if failures else 0


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = {a for a in argv[1:] if a.startswith("--")}
    unknown = flags - {"--require-coverage", "--agreement", "--routes"}
    if (unknown or not 1 <= len(args) <= 2 or len(flags & {"--agreement", "--routes"}) > 1
            or (flags & {"--agreement", "--routes"} and len(args) != 2)):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(args[0], encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        print("openapi_check: cannot read %s: %s" % (args[0], e), file=sys.stderr)
        return 2
    spec = Spec(doc)
    failures = 0
    for p in self_check(spec):
        print("SPEC: %s" % p)
        failures += 1
    if failures:
        print("openapi_check: the spec is not structurally valid (%d problems)" % failures)
        return 1
    if len(args) == 1:
        print("openapi_check: spec OK (%d paths)" % len(doc["paths"]))
        return 0

    try:
        with open(args[1], encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        print("openapi_check: cannot read %s: %s" % (args[1], e), file=sys.stderr)
        return 2
    if "--agreement" in flags:
        return check_agreement(spec, lines)
    if "--routes" in flags:
        return check_routes(spec, lines)
    covered = {}
    count = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        count += 1
        try:
            rec = json.loads(line)
        except ValueError as e:
            print("FAIL line %d: not JSON: %s" % (n, e))
            failures += 1
            continue
        label = "%s %s -> %s" % (rec.get("method"), rec.get("path") or rec.get("path_template"),
                                 rec.get("status"))
        found = []
        op_key = check_exchange(spec, rec, found.append)
        for msg in found:
            print("FAIL line %d: %s: %s" % (n, label, msg))
        failures += len(found)
        if op_key:
            covered.setdefault(op_key, set()).add(str(rec.get("status")))

    declared = [(p, m) for p, item in doc["paths"].items() for m in item if m in METHODS]
    for p, m in declared:
        seen = covered.get((p, m))
        if not seen:
            msg = "%s %s was never exercised" % (m.upper(), p)
            if "--require-coverage" in flags:
                print("FAIL coverage: " + msg)
                failures += 1
            else:
                print("note: " + msg)
    print("openapi_check: %d exchanges, %d of %d operations exercised, %d failures"
          % (count, len(covered), len(declared), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Validate a STAC Item (or Collection) against the core JSON Schema of its stac_version and
against the JSON Schema of every extension it declares, offline: every schema comes from files
that registry packages ship, nothing is fetched (the script blocks sockets before validating).

    $LAB_PY_READERS tests/support/validate_stac.py <item.json | http(s)://... | -> \
        [--schemas DIR] [--allow-missing URI]... [--list]

The document may be a STAC Item, a Collection, a FeatureCollection of Items, or the JSON that
`provisioner workload register --dry-run -o json` prints (the Item under "item"). An http(s)
URL (e.g. $STAC_API_URL/collections/<c>/items/<id>) is read once, before sockets are blocked.

Where the schemas come from (see tests/lab/eo/requirements/stac-schemas.txt):
  core       the installed pystac-core package: pystac/validation/jsonschemas/ (STAC 1.1.0
             item/collection/catalog + their parts, GeoJSON Feature/Geometry).
  extensions source distributions of pystac-ext-* packages in DIR (--schemas, else
             $LAB_STAC_SCHEMAS, else $LAB_CACHE/stac-schemas, /var/cache/provisioner-lab/...):
             the recorded HTTP responses in their tests/cassettes/**/*.yaml (GET, status 200,
             a JSON Schema body; 30x redirects followed inside the cassette) and JSON Schema
             files in their tests/ (a "$schema" of json-schema.org and an "$id"). A URI that two
             sources give with different contents is refused.
  meta       jsonschema-specifications (draft-07 etc. metaschemas).

Checks (one PASS/FAIL line each, then "# N passed, M failed" and a JSON summary line):
  core       the document against the core schema for its type and stac_version;
  extension  for every stac_extensions URI: the schema is available locally (else FAIL,
             unless the URI is given with --allow-missing: then SKIP, reported, not a failure),
             and the document validates against it (all errors listed, up to 10 per schema).
  refs       a $ref to a schema that is not available locally fails the schema that holds it.
Exit 0 if nothing failed, 1 if a check failed, 2 if the input or the schema directory is
unusable. --list prints the local schema index (URI -> source) and exits.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urldefrag, urljoin

try:
    import jsonschema
    import referencing
    import referencing.exceptions
    import referencing.jsonschema
    import yaml
    from jsonschema import validators
except ImportError as e:  # pragma: no cover
    sys.stderr.write(f"validate_stac: missing library ({e}); run it with $LAB_PY_READERS "
                     "(tests/lab/eo/requirements/tiler.txt pins jsonschema, referencing, PyYAML)\n")
    sys.exit(2)

MAX_ERRORS = 10


class InputError(Exception):
    pass


def norm(uri: str) -> str:
    """A schema URI without fragment (and without the empty '#' some $id values carry)."""
    return urldefrag(uri.strip())[0]


# ----------------------------------------------------------------------------------- the index
class Index:
    """URI -> (schema document, provenance). Conflicting sources for one URI are remembered."""

    def __init__(self):
        self.docs: dict[str, dict] = {}
        self.src: dict[str, str] = {}
        self.conflicts: dict[str, list[str]] = {}

    def add(self, uri: str, doc: dict, source: str):
        u = norm(uri)
        if not u:
            return
        if u in self.docs:
            if self.docs[u] != doc:
                self.conflicts.setdefault(u, [self.src[u]]).append(source)
            return
        self.docs[u] = doc
        self.src[u] = source

    def add_schema(self, doc: dict, source: str, *uris: str):
        """Register under the given URIs and under the document's own $id."""
        for u in uris:
            self.add(u, doc, source)
        if isinstance(doc.get("$id"), str):
            self.add(doc["$id"], doc, source)


def load_core(index: Index) -> str:
    """pystac's bundled schemas: register each file under its $id and under the URL its path
    stands for (stac-spec/v1.1.0/common.json has the $id '.../json-schema/commonjson')."""
    try:
        import importlib.metadata as md
        from importlib.resources import files
        root = files("pystac.validation.jsonschemas")
    except Exception as e:  # noqa: BLE001
        raise InputError(f"pystac (pystac-core) is not installed: {e}") from e
    try:
        ver = md.version("pystac-core")
        dist = f"pystac-core {ver}"
    except Exception:  # noqa: BLE001
        dist = f"pystac {md.version('pystac')}"
    n = 0
    base = Path(str(root))
    for p in sorted(base.rglob("*.json")):
        doc = json.loads(p.read_text())
        if not isinstance(doc, dict):
            continue
        rel = p.relative_to(base).as_posix()
        uris = []
        sid = doc.get("$id")
        if isinstance(sid, str) and sid:
            # the same directory as the $id, with the file's own name
            uris.append(urljoin(norm(sid), p.name))
        index.add_schema(doc, f"{dist}: pystac/validation/jsonschemas/{rel}", *uris)
        n += 1
    if n == 0:
        raise InputError(f"{dist}: no JSON schema under pystac/validation/jsonschemas")
    return f"{dist} ({n} files)"


def is_json_schema(doc) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("$schema"), str) \
        and "json-schema.org" in doc["$schema"]


def load_sdist(index: Index, path: Path) -> int:
    """Schemas inside one sdist: VCR cassettes and JSON Schema fixture files under tests/."""
    n = 0
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            if not m.isfile():
                continue
            parts = PurePosixPath(m.name).parts
            if "tests" not in parts:
                continue
            where = f"{path.name}: {m.name}"
            if m.name.endswith((".yaml", ".yml")) and "cassettes" in parts:
                data = yaml.safe_load(tf.extractfile(m).read())
                inter = (data or {}).get("interactions") or []
                got: dict[str, object] = {}
                redirects: dict[str, str] = {}
                for it in inter:
                    req, resp = it.get("request") or {}, it.get("response") or {}
                    if (req.get("method") or "GET").upper() != "GET":
                        continue
                    uri = req.get("uri") or ""
                    code = int((resp.get("status") or {}).get("code") or 0)
                    if 300 <= code < 400:
                        hdr = {k.lower(): v for k, v in (resp.get("headers") or {}).items()}
                        loc = hdr.get("location")
                        if isinstance(loc, list):
                            loc = loc[0] if loc else None
                        if loc:
                            redirects[norm(uri)] = urljoin(uri, loc)
                        continue
                    if code != 200:
                        continue
                    body = (resp.get("body") or {}).get("string")
                    if isinstance(body, bytes):
                        body = body.decode("utf-8", "replace")
                    try:
                        doc = json.loads(body) if body else None
                    except ValueError:
                        continue
                    if is_json_schema(doc):
                        got[norm(uri)] = doc
                for u, doc in got.items():
                    index.add_schema(doc, f"{where} (recorded GET {u})", u)
                    n += 1
                for u, target in redirects.items():
                    t = norm(target)
                    if t in got:
                        index.add(u, got[t], f"{where} (recorded redirect {u} -> {t})")
            elif m.name.endswith(".json"):
                try:
                    doc = json.loads(tf.extractfile(m).read())
                except ValueError:
                    continue
                if is_json_schema(doc) and isinstance(doc.get("$id"), str):
                    index.add_schema(doc, where)
                    n += 1
    return n


def schema_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("LAB_STAC_SCHEMAS"):
        return Path(os.environ["LAB_STAC_SCHEMAS"])
    return Path(os.environ.get("LAB_CACHE", "/var/cache/provisioner-lab")) / "stac-schemas"


def build_index(d: Path) -> tuple[Index, list[str]]:
    index = Index()
    notes = [load_core(index)]
    if not d.is_dir():
        raise InputError(f"schema directory {d} does not exist: run `tests/lab/up.sh eo` (it downloads "
                         f"tests/lab/eo/requirements/stac-schemas.txt there) or pass --schemas DIR")
    sd = sorted(d.glob("*.tar.gz"))
    if not sd:
        raise InputError(f"schema directory {d} holds no *.tar.gz source distribution")
    for p in sd:
        notes.append(f"{p.name} ({load_sdist(index, p)} schemas)")
    return index, notes


def make_registry(index: Index) -> referencing.Registry:
    def retrieve(uri: str):
        raise referencing.exceptions.NoSuchResource(ref=uri)  # never fetch

    resources = []
    for u, doc in index.docs.items():
        spec = referencing.jsonschema.specification_with(doc.get("$schema", ""),
                                                         default=referencing.jsonschema.DRAFT7)
        resources.append((u, spec.create_resource(doc)))
    return referencing.Registry(retrieve=retrieve).with_resources(resources)


# ----------------------------------------------------------------------------------- network
def block_sockets():
    """From here on any connection attempt raises: the validation is provably offline."""
    def refuse(*a, **k):
        raise ConnectionRefusedError("validate_stac: network access is disabled while validating")
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse  # type: ignore[assignment]


def read_document(src: str):
    if src == "-":
        return json.load(sys.stdin)
    if src.startswith(("http://", "https://")):
        req = urllib.request.Request(src, headers={"Accept": "application/geo+json, application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())
    p = Path(src)
    if not p.is_file():
        raise InputError(f"{src}: no such file")
    return json.loads(p.read_text())


def documents(doc) -> list[dict]:
    if isinstance(doc, dict) and isinstance(doc.get("item"), dict) and doc["item"].get("type") == "Feature":
        return [doc["item"]]  # provisioner workload register --dry-run -o json
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        return [f for f in doc.get("features") or [] if isinstance(f, dict)]
    if isinstance(doc, dict) and doc.get("type") in ("Feature", "Collection", "Catalog"):
        return [doc]
    raise InputError("not a STAC Item, Collection, Catalog or FeatureCollection "
                     f"(type {doc.get('type') if isinstance(doc, dict) else type(doc).__name__!r})")


def core_uri(doc: dict) -> str:
    v = doc.get("stac_version")
    kind = {"Feature": "item-spec/json-schema/item.json",
            "Collection": "collection-spec/json-schema/collection.json",
            "Catalog": "catalog-spec/json-schema/catalog.json"}[doc["type"]]
    return f"https://schemas.stacspec.org/v{v}/{kind}"


# ----------------------------------------------------------------------------------- validation
class Report:
    def __init__(self):
        self.checks: list[dict] = []

    def add(self, name: str, status: str, detail: str = ""):
        self.checks.append({"name": name, "status": status, "detail": detail})
        print(f"{status:<4}  {name}" + (f"  -- {detail}" if detail else ""), flush=True)


def short_message(e) -> str:
    """The error message, with a long instance repr (a whole Item) cut down."""
    msg = e.message
    r = repr(e.instance)
    if len(r) > 100 and r in msg:
        msg = msg.replace(r, "<" + type(e.instance).__name__ + ">")
    return msg[:300]


def describe(e, depth: int = 0) -> str:
    """One error as 'at <path>: <message>'; for anyOf/oneOf, the errors of the branch that came
    closest (fewest errors) -- e.g. the Item branch of an extension schema for an Item."""
    path = "/".join(str(p) for p in e.absolute_path) or "(root)"
    if e.context and depth < 4:
        branches: dict = {}
        for c in e.context:
            key = c.relative_schema_path[0] if c.relative_schema_path else 0
            branches.setdefault(key, []).append(c)
        # branches that fail on the STAC object type (e.g. the Collection branch for an Item)
        # are not the one meant, unless every branch does
        meant = {k: v for k, v in branches.items()
                 if not any(c.validator == "const" and list(c.relative_path) == ["type"] for c in v)}
        key, errs = min((meant or branches).items(),
                        key=lambda kv: (len(kv[1]), -max(len(c.absolute_path) for c in kv[1])))
        inner = "; ".join(describe(c, depth + 1) for c in errs[:5])
        return f"at {path}: {e.validator} failed, closest branch #{key}: [{inner}]"
    hint = ""
    if e.validator == "not" and list(e.absolute_path) == ["collection"]:
        hint = " (STAC 1.1.0 item.json: 'collection' is only allowed with a link of rel 'collection')"
    return f"at {path}: {short_message(e)}{hint}"


def validate_one(R: Report, index: Index, registry, doc: dict, label: str, uri: str, what: str):
    u = norm(uri)
    name = f"{label}: {what} {uri}"
    if u in index.conflicts:
        R.add(name, "FAIL", f"sources disagree on this schema: {index.conflicts[u]}")
        return
    schema = index.docs[u]
    cls = validators.validator_for(schema, default=jsonschema.Draft7Validator)
    v = cls(schema, registry=registry)
    try:
        errors = sorted(v.iter_errors(doc), key=lambda e: (list(e.absolute_path), e.message))
    except (referencing.exceptions.Unresolvable, jsonschema.exceptions._WrappedReferencingError) as e:  # noqa: SLF001
        R.add(name, "FAIL", f"a $ref of this schema is not available locally: {e}")
        return
    if errors:
        lines = [describe(e) for e in errors[:MAX_ERRORS]]
        more = f" (+{len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
        R.add(name, "FAIL", f"{len(errors)} error(s){more}; " + "; ".join(lines)
              + f" [schema from {index.src[u]}]")
    else:
        R.add(name, "PASS", f"schema from {index.src[u]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("document", nargs="?", help="STAC JSON file, http(s) URL, or - for stdin")
    ap.add_argument("--schemas", help="folder of the sdists of stac-schemas.txt (default: $LAB_STAC_SCHEMAS, "
                                      "else $LAB_CACHE/stac-schemas)")
    ap.add_argument("--allow-missing", action="append", default=[], metavar="URI",
                    help="an extension URI whose schema may be absent locally (reported as SKIP); repeatable")
    ap.add_argument("--list", action="store_true", help="print the local schema index and exit")
    args = ap.parse_args()

    if not args.list and not args.document:
        ap.error("a document is required (or --list)")
    try:
        index, notes = build_index(schema_dir(args.schemas))
        if args.list:
            for u in sorted(index.docs):
                flag = "  CONFLICT " + str(index.conflicts[u]) if u in index.conflicts else ""
                print(f"{u}\t{index.src[u]}{flag}")
            return 0
        docs = documents(read_document(args.document))
        if not docs:
            raise InputError("no STAC object in the document")
    except InputError as e:
        sys.stderr.write(f"validate_stac: {e}\n")
        return 2
    except Exception as e:  # noqa: BLE001
        sys.stderr.write(f"validate_stac: cannot read input: {type(e).__name__}: {e}\n")
        return 2

    block_sockets()
    registry = make_registry(index)
    allow = {norm(u) for u in args.allow_missing}
    print(f"# {args.document}: {len(docs)} STAC object(s); local schemas: {len(index.docs)} URIs from "
          + ", ".join(notes), flush=True)
    R = Report()
    for doc in docs:
        label = f"{doc.get('type')} {doc.get('id')!r}"
        if not doc.get("stac_version"):
            R.add(f"{label}: stac_version", "FAIL", "missing")
            continue
        cu = core_uri(doc)
        if norm(cu) not in index.docs:
            have = sorted({u.split('/')[3] for u in index.docs if u.startswith("https://schemas.stacspec.org/")})
            R.add(f"{label}: core schema {cu}", "FAIL",
                  f"not available locally (local core versions: {have}); refusing to validate without it")
        else:
            validate_one(R, index, registry, doc, label, cu, "core schema")
        exts = doc.get("stac_extensions") or []
        if not isinstance(exts, list):
            R.add(f"{label}: stac_extensions", "FAIL", f"not a list: {exts!r}")
            continue
        for uri in exts:
            if not isinstance(uri, str):
                R.add(f"{label}: extension {uri!r}", "FAIL", "not a string")
                continue
            if norm(uri) not in index.docs:
                if norm(uri) in allow:
                    R.add(f"{label}: extension {uri}", "SKIP",
                          "schema not available locally; allowed by --allow-missing, NOT validated")
                else:
                    R.add(f"{label}: extension {uri}", "FAIL",
                          "schema not available locally (no registry package ships it); refusing "
                          "(see --list; --allow-missing URI to skip it explicitly)")
                continue
            validate_one(R, index, registry, doc, label, uri, "extension")

    passed = sum(c["status"] == "PASS" for c in R.checks)
    failed = sum(c["status"] == "FAIL" for c in R.checks)
    skipped = sum(c["status"] == "SKIP" for c in R.checks)
    print(f"# {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""), flush=True)
    print(json.dumps({"passed": passed, "failed": failed, "skipped": skipped, "checks": R.checks}))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

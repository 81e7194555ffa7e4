"""Helpers shared by the GeoZarr verifiers (verify_geozarr.py for Sentinel-2, verify_geozarr_s1.py
for Sentinel-1): check bookkeeping and output, opening local or s3:// (lab moto) Zarr stores, the
consolidated-metadata comparison, input loading and the final summary.

Not a script: the verifiers import it from their own directory (sys.path[0] when they are run as
`$LAB_PY_READERS tests/support/<verifier>.py ...`), after their own check that the reader
libraries are installed.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zarr
from zarr.core.metadata.v3 import ArrayV3Metadata


class InputError(Exception):
    pass


# ----------------------------------------------------------------------------------- reporting
class Report:
    def __init__(self):
        self.checks: list[dict] = []

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        ok = bool(ok)
        self.checks.append({"name": name, "ok": ok, "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  -- {detail}" if detail else ""), flush=True)
        return ok

    @contextmanager
    def guard(self, name: str):
        """Turn an unexpected exception inside a block of checks into one failed check."""
        try:
            yield
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001
            tb = traceback.extract_tb(e.__traceback__)[-1]
            self.add(name, False, f"{type(e).__name__}: {e} (at line {tb.lineno})")

    def summary(self) -> dict:
        p = sum(c["ok"] for c in self.checks)
        return {"passed": p, "failed": len(self.checks) - p, "checks": self.checks}


R = Report()


def finish(t0: float, **extra) -> int:
    """Print the summary line and the JSON summary (plus `extra` keys); the exit code."""
    s = R.summary()
    s.update(extra)
    print(f"# {s['passed']} passed, {s['failed']} failed in {time.monotonic() - t0:.1f} s", flush=True)
    print(json.dumps(s, default=str))
    return 0 if s["failed"] == 0 else 1


# ----------------------------------------------------------------------------------- stores
def s3_options() -> dict:
    ep = os.environ.get("S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    if not ep:
        raise InputError("s3:// path given but neither S3_ENDPOINT_URL nor AWS_ENDPOINT_URL is set "
                         "(source /var/tmp/provisioner-lab/env.sh); refusing to contact real AWS")
    return {
        "endpoint_url": ep,
        "key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "client_kwargs": {"region_name": os.environ.get("AWS_REGION")
                          or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"},
    }


class Loc:
    """A Zarr hierarchy root: a zarr store for the readers + raw JSON access + node listing."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        if self.url.startswith("s3://"):
            import s3fs
            so = s3_options()
            self.fs = s3fs.S3FileSystem(**so)
            self.base = self.url[len("s3://"):]
            self.store = zarr.storage.FsspecStore.from_url(self.url, storage_options=so, read_only=True)
        elif "://" in self.url:
            raise InputError(f"unsupported URL scheme: {url} (use a local path or s3://)")
        else:
            self.fs = None
            self.base = str(Path(self.url).resolve())
            self.store = zarr.storage.LocalStore(self.base, read_only=True)

    def exists(self, key: str) -> bool:
        if self.fs is None:
            return Path(self.base, key).is_file()
        return self.fs.exists(f"{self.base}/{key}")

    def read_json(self, key: str) -> dict:
        if self.fs is None:
            return json.loads(Path(self.base, key).read_bytes())
        return json.loads(self.fs.cat_file(f"{self.base}/{key}"))

    def metadata_nodes(self) -> list[str]:
        """Relative paths of every node (directory holding a zarr.json), root excluded."""
        if self.fs is None:
            return sorted(str(p.parent.relative_to(self.base)) for p in Path(self.base).rglob("zarr.json")
                          if p.parent != Path(self.base))
        out = []
        for k in self.fs.find(self.base):
            if k.endswith("/zarr.json"):
                rel = k[len(self.base):].strip("/")[: -len("zarr.json")].strip("/")
                if rel:
                    out.append(rel)
        return sorted(out)


def load_inputs(prog: str, source: str, output: str, more):
    """Open the Zarr v2 source (consolidated) and check the Zarr v3 output root exists; then
    `more(src)` for the verifier's own input checks (it raises InputError on bad input).
    Returns (src_loc, out_loc, src, more(src)), or None after writing why to stderr (exit 2)."""
    try:
        for what, u in (("source", source), ("output", output)):
            if "://" not in u and not Path(u).is_dir():
                raise InputError(f"{what} {u}: no such directory")
        src_loc, out_loc = Loc(source), Loc(output)
        if not src_loc.exists(".zmetadata"):
            raise InputError(f"source {source}: no .zmetadata (not a consolidated Zarr v2 product?)")
        if not out_loc.exists("zarr.json"):
            raise InputError(f"output {output}: no zarr.json at the root (not a Zarr v3 store?)")
        src = zarr.open_consolidated(src_loc.store, zarr_format=2, mode="r")
        return src_loc, out_loc, src, more(src)
    except InputError as e:
        sys.stderr.write(f"{prog}: {e}\n")
    except Exception as e:  # noqa: BLE001
        sys.stderr.write(f"{prog}: cannot read inputs: {type(e).__name__}: {e}\n")
    return None


def open_output_root(out: Loc):
    """The output root through its consolidated metadata (a check), else without it."""
    try:
        return zarr.open_consolidated(out.store, mode="r", zarr_format=3)
    except Exception as e:  # noqa: BLE001
        R.add("store: open root with consolidated metadata (zarr-python)", False, f"{type(e).__name__}: {e}")
        return zarr.open_group(out.store, mode="r", zarr_format=3)


def root_consolidated(out: Loc) -> dict | None:
    """Checks that the root zarr.json is a Zarr v3 group with inline consolidated metadata;
    returns that metadata ({node path: zarr.json}) or None."""
    root = out.read_json("zarr.json")
    R.add("store: root zarr.json is a Zarr v3 group",
          root.get("zarr_format") == 3 and root.get("node_type") == "group",
          f"zarr_format={root.get('zarr_format')} node_type={root.get('node_type')}")
    cm = root.get("consolidated_metadata")
    if not R.add("store: root has inline consolidated metadata",
                 isinstance(cm, dict) and cm.get("kind") == "inline" and isinstance(cm.get("metadata"), dict),
                 "" if cm else "consolidated_metadata missing in root zarr.json"):
        return None
    return cm["metadata"]


def consolidated_diff(out: Loc, disk: list[str], cons: dict) -> tuple[list[str], list[str], list[str]]:
    """(on storage but not consolidated, consolidated but absent, stale: consolidated metadata
    that differs from the node's zarr.json)."""
    missing = sorted(set(disk) - set(cons))
    extra = sorted(set(cons) - set(disk))
    stale = [k for k in sorted(set(disk) & set(cons))
             if canon(out.read_json(f"{k}/zarr.json")) != canon(cons[k])]
    return missing, extra, stale


def canon(meta: dict) -> str:
    m = {k: v for k, v in meta.items() if k != "consolidated_metadata"}
    if m.get("node_type") == "array":
        try:
            m = ArrayV3Metadata.from_dict(dict(m)).to_dict()
        except Exception:  # noqa: BLE001  (compare raw JSON then)
            pass
    else:
        m = {"node_type": m.get("node_type"), "zarr_format": m.get("zarr_format"),
             "attributes": m.get("attributes") or {}}
    return json.dumps(m, sort_keys=True, default=str)


def walk_arrays(g, prefix: str):
    """(path, array) of every array below group g, depth first, path prefixed with `prefix`."""
    for n, a in g.arrays():
        yield f"{prefix}/{n}", a
    for n, c in g.groups():
        yield from walk_arrays(c, f"{prefix}/{n}")


# ----------------------------------------------------------------------------------- helpers
def parse_epsg(v) -> int | None:
    if v is None:
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    s = str(v).strip().upper()
    if s.startswith("EPSG:"):
        s = s[5:]
    return int(s) if s.isdigit() else None


def windows(h: int, w: int, n: int) -> list[tuple[slice, slice]]:
    """Full array, or three n x n windows: top-left, centre, bottom-right."""
    if n <= 0 or (n >= h and n >= w):
        return [(slice(0, h), slice(0, w))]
    nh, nw = min(n, h), min(n, w)
    out = []
    for r0, c0 in ((0, 0), ((h - nh) // 2, (w - nw) // 2), (h - nh, w - nw)):
        win = (slice(r0, r0 + nh), slice(c0, c0 + nw))
        if win not in out:
            out.append(win)
    return out

//! STAC: the item for a converted product, the API client (items upsert,
//! collections create/update/clean), and the TiTiler link forms.
//!
//! The item follows the reference registration. Sentinel-2: one `reflectance`
//! asset for the multiscale group (`profile=multiscales`), AOT/WVP/SCL assets.
//! Sentinel-1 GRD: one multiscale asset per polarisation (`vv`, `vh`, …) with
//! `sar:polarizations`, the sar and sat extensions. Both: projection v2,
//! alternate (s3://) + storage extensions, viewer/xyz/tilejson links and a
//! thumbnail on the raster API, `derived_from`, and `expires`.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::{Result, WorkloadError};

pub const MEDIA_ZARR: &str = "application/vnd.zarr; version=3";
pub const MEDIA_MULTISCALES: &str = "application/vnd.zarr; version=3; profile=multiscales";
const EXT_PROJ: &str = "https://stac-extensions.github.io/projection/v2.0.0/schema.json";
const EXT_ALTERNATE: &str = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json";
const EXT_STORAGE: &str = "https://stac-extensions.github.io/storage/v2.0.0/schema.json";
const EXT_TIMESTAMPS: &str = "https://stac-extensions.github.io/timestamps/v1.1.0/schema.json";
const EXT_EO: &str = "https://stac-extensions.github.io/eo/v1.1.0/schema.json";
const EXT_SAR: &str = "https://stac-extensions.github.io/sar/v1.0.0/schema.json";
const EXT_SAT: &str = "https://stac-extensions.github.io/sat/v1.0.0/schema.json";
/// The amplitude range TiTiler links stretch to 0–255 (the reference used 0–219
/// on real products; synthetic ones reach further).
const S1_RESCALE: &str = "0%2C400";

/// Which TiTiler serves the rasters, which decides the link form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RasterFlavor {
    /// titiler-eopf: `{raster}/collections/{c}/items/{id}/…` (production).
    Eopf,
    /// titiler.xarray: `{raster}/…?url=<store>&group=…&variable=…` (any Zarr).
    Xarray,
}

/// Everything the item needs to know about the converted store.
pub struct Converted {
    pub item_id: String,
    pub collection: String,
    /// s3://bucket/key of the store root (`…/<id>.zarr`).
    pub s3_url: String,
    /// Public (HTTPS) URL of the store root, e.g. an S3 gateway.
    pub public_url: String,
    /// The root `zarr.json` with its consolidated metadata.
    pub root: Value,
    /// Storage class of the objects (from a listing).
    pub tier: String,
    /// Where the bucket is: the S3 endpoint URL, its bucket and region (the
    /// storage extension's scheme).
    pub s3_endpoint: String,
    pub bucket: String,
    pub region: String,
}

/// The key of the item's one storage scheme (`storage:schemes`), which every
/// asset's `alternate.s3` refers to (`storage:refs`).
pub const STORAGE_SCHEME: &str = "s3";

pub struct Links {
    /// The item's collection in the STAC API (the `collection` link STAC 1.1 requires).
    pub collection_url: Option<String>,
    pub raster_api: Option<String>,
    pub flavor: RasterFlavor,
    pub source_item_url: Option<String>,
    pub explorer_url: Option<String>,
    pub retention_days: i64,
}

impl Converted {
    fn node(&self, path: &str) -> Option<&Value> {
        self.root
            .pointer("/consolidated_metadata/metadata")
            .and_then(|m| m.get(path))
    }
    fn attrs(&self, path: &str) -> Option<&Map<String, Value>> {
        self.node(path)
            .and_then(|n| n.get("attributes"))
            .and_then(Value::as_object)
    }
    fn has(&self, path: &str) -> bool {
        self.node(path).is_some()
    }
}

/// What a converted store holds, from its consolidated metadata.
enum Layout {
    /// `measurements/reflectance` with levels r10m, r20m, …
    S2,
    /// One multiscale `<group>/measurements` per polarisation, VV/HH first.
    S1(Vec<S1Pol>),
}

struct S1Pol {
    /// vv, vh, hh or hv.
    key: String,
    group: String,
    /// The native level's name (the multiscales layout's first asset).
    native: String,
}

impl Layout {
    fn of(c: &Converted) -> Result<Self> {
        if c.has("measurements/reflectance") {
            return Ok(Self::S2);
        }
        let mut pols: Vec<S1Pol> = c
            .root
            .pointer("/consolidated_metadata/metadata")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let group = k.strip_suffix("/measurements").filter(|g| !g.contains('/'))?;
                let native = v.pointer("/attributes/multiscales/layout/0/asset")?.as_str()?;
                let (_, pol) = group.rsplit_once('_')?;
                Some(S1Pol { key: pol.to_lowercase(), group: group.to_string(), native: native.to_string() })
            })
            .collect();
        pols.sort_by_key(|p| ["vv", "hh", "vh", "hv"].iter().position(|x| *x == p.key));
        if pols.is_empty() {
            return Err(WorkloadError::product(&c.s3_url, "neither /measurements/reflectance (Sentinel-2) nor polarisation groups with a multiscale /measurements (Sentinel-1) in the consolidated metadata: not a converted store"));
        }
        Ok(Self::S1(pols))
    }

    /// The multiscale group whose native level describes the item's grid, and that level.
    fn main_group(&self) -> (String, String) {
        match self {
            Self::S2 => ("measurements/reflectance".into(), "measurements/reflectance/r10m".into()),
            Self::S1(pols) => {
                let p = &pols[0];
                (format!("{}/measurements", p.group), format!("{}/measurements/{}", p.group, p.native))
            }
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The xyz/tilejson/viewer/thumbnail URLs: Sentinel-2's RGB reflectance, or
/// Sentinel-1's first polarisation (VV or HH) as stretched amplitude.
fn raster_urls(c: &Converted, l: &Links, layout: &Layout) -> Option<[(String, String); 4]> {
    let raster = l.raster_api.as_deref()?.trim_end_matches('/');
    Some(match l.flavor {
        RasterFlavor::Eopf => {
            let base = format!("{raster}/collections/{}/items/{}", c.collection, c.item_id);
            let q = match layout {
                Layout::S2 => "variables=%2Fmeasurements%2Freflectance%3Ab04&variables=%2Fmeasurements%2Freflectance%3Ab03&variables=%2Fmeasurements%2Freflectance%3Ab02\
                     &bidx=1&rescale=0%2C1&color_formula=gamma+rgb+1.3%2C+sigmoidal+rgb+6+0.1%2C+saturation+1.2"
                    .to_string(),
                Layout::S1(pols) => format!(
                    "variables={}&bidx=1&rescale={S1_RESCALE}",
                    urlencode(&format!("/{}/measurements:grd", pols[0].group))
                ),
            };
            [
                (
                    "xyz".into(),
                    format!("{base}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?{q}"),
                ),
                (
                    "tilejson".into(),
                    format!("{base}/WebMercatorQuad/tilejson.json?{q}"),
                ),
                ("viewer".into(), format!("{base}/viewer")),
                ("thumbnail".into(), format!("{base}/preview?format=png&{q}")),
            ]
        }
        RasterFlavor::Xarray => {
            // titiler.xarray renders one variable of one group: b04 at r10m, or
            // the first polarisation's grd at its native level.
            let q = match layout {
                Layout::S2 => format!(
                    "url={}&group=measurements%2Freflectance%2Fr10m&variable=b04&rescale=0%2C0.5",
                    urlencode(&c.s3_url)
                ),
                Layout::S1(_) => format!(
                    "url={}&group={}&variable=grd&rescale={S1_RESCALE}&nodata=0",
                    urlencode(&c.s3_url),
                    urlencode(&layout.main_group().1)
                ),
            };
            [
                (
                    "xyz".into(),
                    format!("{raster}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?{q}"),
                ),
                (
                    "tilejson".into(),
                    format!("{raster}/WebMercatorQuad/tilejson.json?{q}"),
                ),
                (
                    "viewer".into(),
                    format!("{raster}/WebMercatorQuad/map.html?{q}"),
                ),
                ("thumbnail".into(), format!("{raster}/preview.png?{q}")),
            ]
        }
    })
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Build the STAC item. `source` is the source STAC item (from the catalogue or
/// the product's own `stac_discovery`).
pub fn build_item(c: &Converted, source: &Value, l: &Links, now: DateTime<Utc>) -> Result<Value> {
    let layout = Layout::of(c)?;
    let (main, native) = layout.main_group();
    let proj_code = c
        .attrs(&main)
        .and_then(|a| a.get("proj:code"))
        .cloned()
        .unwrap_or(Value::Null);
    let r10 = c.attrs(&native).cloned().unwrap_or_default();
    let bbox = c
        .root
        .pointer("/attributes/spatial:bbox")
        .cloned()
        .ok_or_else(|| WorkloadError::product(&c.s3_url, "root zarr.json has no spatial:bbox"))?;
    let b: Vec<f64> = bbox
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    if b.len() != 4 {
        return Err(WorkloadError::product(
            &c.s3_url,
            "root spatial:bbox is not 4 numbers",
        ));
    }

    let mut props = source
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // EOPF products carry datetime null (or "null") with a start/end range.
    if props
        .get("datetime")
        .is_none_or(|d| d.is_null() || d == "null")
    {
        let start = props.get("start_datetime").cloned().ok_or_else(|| {
            WorkloadError::product(
                &c.s3_url,
                "the source item has neither datetime nor start_datetime",
            )
        })?;
        props.insert("datetime".into(), start);
    }
    props.remove("proj:epsg");
    props.remove("bands");
    props.remove("synthetic");
    props.insert("proj:code".into(), proj_code.clone());
    for (k, from) in PROJ_FROM_SPATIAL {
        if let Some(v) = r10.get(from) {
            props.insert(k.into(), v.clone());
        }
    }
    props.insert(
        "created".into(),
        props
            .get("created")
            .cloned()
            .unwrap_or_else(|| json!(rfc3339(now))),
    );
    props.insert("updated".into(), json!(rfc3339(now)));
    if l.retention_days > 0 {
        // Formatted exactly: pgstac compares `expires` as a string.
        props.insert(
            "expires".into(),
            json!(
                (now + Duration::days(l.retention_days))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            ),
        );
    }

    // The storage extension v2: one scheme in the properties, referred to by
    // every alternate; the per-alternate `storage:scheme` with its `tier` is the
    // reference's earlier form, kept for the clients that read it.
    props.insert(
        "storage:schemes".into(),
        json!({STORAGE_SCHEME: {"type": "custom-s3", "platform": c.s3_endpoint, "bucket": c.bucket,
               "region": c.region, "requester_pays": false, "storage_class": c.tier}}),
    );
    let scheme = json!({"platform": "s3", "requester_pays": false, "tier": c.tier});

    let mut assets = match &layout {
        Layout::S2 => s2_assets(c, &proj_code, &r10, &scheme),
        Layout::S1(pols) => s1_assets(c, pols, &proj_code, &scheme),
    };

    let mut links = vec![
        json!({"rel": "store", "href": c.public_url, "type": "application/octet-stream", "title": "Zarr Store"}),
    ];
    if let Some(href) = &l.collection_url {
        links.push(json!({"rel": "collection", "href": href, "type": "application/json"}));
    }
    if let Some(urls) = raster_urls(c, l, &layout) {
        for (rel, href) in urls {
            match rel.as_str() {
                "thumbnail" => {
                    assets.insert("thumbnail".into(), json!({"href": href, "type": "image/png", "title": "Thumbnail", "roles": ["thumbnail"]}));
                }
                "viewer" => links.push(json!({"rel": "viewer", "href": href, "type": "text/html", "title": "Viewer"})),
                "xyz" => links.push(json!({"rel": "xyz", "href": href, "type": "image/png", "title": match layout { Layout::S2 => "True colour tiles", Layout::S1(_) => "Amplitude tiles" }})),
                _ => links.push(json!({"rel": rel, "href": href, "type": "application/json", "title": "TileJSON"})),
            }
        }
    }
    if let Some(src) = &l.source_item_url {
        links.push(json!({"rel": "derived_from", "href": src, "type": "application/json", "title": "Source item"}));
    }
    if let Some(ex) = &l.explorer_url {
        links.push(json!({"rel": "via", "href": format!("{}/collections/{}/items/{}", ex.trim_end_matches('/'), c.collection, c.item_id), "type": "text/html", "title": "EOPF Explorer"}));
    }

    let mut exts: Vec<String> = source
        .get("stac_extensions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    exts.retain(|e| !e.contains("/projection/"));
    let mut ours = vec![EXT_PROJ, EXT_ALTERNATE, EXT_STORAGE];
    match &layout {
        Layout::S2 => ours.push(EXT_EO),
        // Declared when the properties use them (any version the source declared stays).
        Layout::S1(_) => {
            for (prefix, ext, family) in [("sar:", EXT_SAR, "/sar/"), ("sat:", EXT_SAT, "/sat/")] {
                if props.keys().any(|k| k.starts_with(prefix)) && !exts.iter().any(|x| x.contains(family)) {
                    ours.push(ext);
                }
            }
        }
    }
    for e in ours {
        if !exts.iter().any(|x| x == e) {
            exts.push(e.into());
        }
    }
    if l.retention_days > 0 && !exts.iter().any(|x| x == EXT_TIMESTAMPS) {
        exts.push(EXT_TIMESTAMPS.into());
    }
    let geometry = source.get("geometry").filter(|g| !g.is_null()).cloned().unwrap_or_else(|| {
        json!({"type": "Polygon", "coordinates": [[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]]})
    });
    Ok(json!({
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": exts,
        "id": c.item_id,
        "collection": c.collection,
        "geometry": geometry,
        "bbox": b,
        "properties": props,
        "assets": assets,
        "links": links,
    }))
}

/// Projection fields (item properties and assets) from a grid group's spatial attributes.
const PROJ_FROM_SPATIAL: [(&str, &str); 3] = [
    ("proj:bbox", "spatial:bbox"),
    ("proj:shape", "spatial:shape"),
    ("proj:transform", "spatial:transform"),
];

/// `asset` with the item's `proj:code` and the grid of `attrs` (null where it has none).
fn with_proj(mut asset: Value, code: &Value, attrs: &Map<String, Value>) -> Value {
    asset["proj:code"] = code.clone();
    for (k, from) in PROJ_FROM_SPATIAL {
        asset[k] = attrs.get(from).cloned().unwrap_or(Value::Null);
    }
    asset
}

/// An asset's `alternate`: its s3:// href, in the item's one storage scheme.
fn s3_alternate(href: String, scheme: &Value) -> Value {
    json!({"s3": {"href": href, "storage:scheme": scheme, "storage:refs": [STORAGE_SCHEME]}})
}

/// The ground sampling distance a level's name states (`r10m` → 10).
fn level_gsd(name: &str) -> Option<f64> {
    name.strip_prefix('r')?.strip_suffix('m')?.parse().ok()
}

/// Sentinel-2: the multiscale reflectance (bands from the finest level that has
/// each) and the AOT/WVP/SCL arrays.
fn s2_assets(c: &Converted, proj_code: &Value, r10: &Map<String, Value>, scheme: &Value) -> Map<String, Value> {
    let asset_at = |path: &str| -> (String, String) {
        (
            format!("{}/{path}", c.public_url),
            format!("{}/{path}", c.s3_url),
        )
    };
    // Bands: the finest level that has each, with its gsd and shape.
    let mut bands: Vec<Value> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for level in ["r10m", "r20m", "r60m"] {
        let gsd = level_gsd(level).unwrap_or(0.0);
        let prefix = format!("measurements/reflectance/{level}/");
        let meta = c
            .root
            .pointer("/consolidated_metadata/metadata")
            .and_then(Value::as_object);
        for (k, v) in meta.into_iter().flatten() {
            let Some(name) = k.strip_prefix(&prefix) else {
                continue;
            };
            if name.contains('/') || !name.starts_with('b') || names.iter().any(|n| n == name) {
                continue;
            }
            names.push(name.to_string());
            let mut band = json!({"name": name, "gsd": gsd, "proj:shape": v["shape"]});
            if let Some(d) = v.pointer("/attributes/long_name") {
                band["description"] = d.clone();
            }
            bands.push(band);
        }
    }
    bands.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let cube_vars: Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), json!({"dimensions": ["y", "x"], "type": "data"})))
        .collect();

    let mut assets = Map::new();
    let (href, s3) = asset_at("measurements/reflectance");
    assets.insert(
        "reflectance".into(),
        with_proj(
            json!({
                "href": href, "type": MEDIA_MULTISCALES, "title": "Surface Reflectance", "roles": ["data", "reflectance"],
                "gsd": 10,
                "bands": bands,
                "cube:dimensions": {"x": {"type": "spatial", "axis": "x", "reference_system": proj_code}, "y": {"type": "spatial", "axis": "y", "reference_system": proj_code}},
                "cube:variables": cube_vars,
                "alternate": s3_alternate(s3, scheme)
            }),
            proj_code,
            r10,
        ),
    );
    for (key, path, title, gsd) in [
        (
            "AOT_10m",
            "quality/atmosphere/r10m/aot",
            "Aerosol optical thickness (AOT)",
            10,
        ),
        (
            "WVP_10m",
            "quality/atmosphere/r10m/wvp",
            "Water vapour (WVP)",
            10,
        ),
        (
            "SCL_20m",
            "conditions/mask/l2a_classification/r20m/scl",
            "Scene classification map (SCL)",
            20,
        ),
    ] {
        if !c.has(path) {
            continue;
        }
        let group = path.rsplit_once('/').map_or("", |(g, _)| g);
        let ga = c.attrs(group).cloned().unwrap_or_default();
        let (href, s3) = asset_at(path);
        assets.insert(
            key.into(),
            with_proj(
                json!({"href": href, "type": MEDIA_ZARR, "title": title, "roles": ["data"], "gsd": gsd,
                       "alternate": s3_alternate(s3, scheme)}),
                proj_code,
                &ga,
            ),
        );
    }

    assets
}

/// Sentinel-1: one multiscale asset per polarisation, its native level's grid.
fn s1_assets(c: &Converted, pols: &[S1Pol], proj_code: &Value, scheme: &Value) -> Map<String, Value> {
    let mut assets = Map::new();
    for p in pols {
        let path = format!("{}/measurements", p.group);
        let native = c
            .attrs(&format!("{path}/{}", p.native))
            .cloned()
            .unwrap_or_default();
        let pol = p.key.to_uppercase();
        assets.insert(
            p.key.clone(),
            with_proj(
                json!({
                    "href": format!("{}/{path}", c.public_url),
                    "type": MEDIA_MULTISCALES,
                    "title": format!("{pol} amplitude (GRD digital number, georeferenced)"),
                    "roles": ["data", "amplitude"],
                    "gsd": level_gsd(&p.native),
                    "sar:polarizations": [pol],
                    "cube:variables": {"grd": {"dimensions": ["y", "x"], "type": "data", "description": format!("{pol} amplitude, 0 = no data")}},
                    "alternate": s3_alternate(format!("{}/{path}", c.s3_url), scheme)
                }),
                proj_code,
                &native,
            ),
        );
    }
    assets
}

/// A default collection document for `collections create` without `--file`.
pub fn default_collection(id: &str, title: Option<&str>, description: Option<&str>) -> Value {
    json!({
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": id,
        "title": title.unwrap_or(id),
        "description": description.unwrap_or("Sentinel-2 products converted to cloud-optimised GeoZarr by provisioner"),
        "license": "other",
        "extent": {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]}, "temporal": {"interval": [["2015-06-27T00:00:00Z", null]]}},
        "item_assets": {
            "reflectance": {"type": MEDIA_MULTISCALES, "roles": ["data", "reflectance"], "title": "Surface Reflectance"},
            "AOT_10m": {"type": MEDIA_ZARR, "roles": ["data"]},
            "WVP_10m": {"type": MEDIA_ZARR, "roles": ["data"]},
            "SCL_20m": {"type": MEDIA_ZARR, "roles": ["data"]}
        },
        "links": []
    })
}

/// A STAC API with the transactions extension.
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Bearer token (never logged).
    token: Option<String>,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsert {
    Created,
    Replaced,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http: super::io::http_client()?,
            token,
        })
    }

    /// A request to an API path (`/collections/…`) or an absolute URL, with the token.
    fn req(&self, m: reqwest::Method, path_or_url: &str) -> reqwest::RequestBuilder {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let r = self.http.request(m, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, what: String, r: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let resp = r.send().await.map_err(|e| WorkloadError::Http {
            what: what.clone(),
            msg: format!("{e} (is the STAC API at {} reachable?)", self.base),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    fn fail(what: String, status: u16, body: &Value) -> WorkloadError {
        let mut s = match body {
            Value::String(s) => s.clone(),
            v => v
                .get("detail")
                .or_else(|| v.get("description"))
                .map_or_else(|| v.to_string(), |d| d.to_string()),
        };
        s.truncate(400);
        WorkloadError::Stac {
            what,
            status,
            body: s,
        }
    }

    /// POST the item; on 409 (it exists) replace it with PUT, so a rerun
    /// converges without a window where the item is missing.
    pub async fn upsert_item(&self, collection: &str, item: &Value) -> Result<Upsert> {
        let id = item["id"].as_str().unwrap_or_default();
        let what = format!("POST /collections/{collection}/items ({id})");
        let (st, body) = self
            .send(
                what.clone(),
                self.req(
                    reqwest::Method::POST,
                    &format!("/collections/{collection}/items"),
                )
                .json(item),
            )
            .await?;
        match st {
            200 | 201 => Ok(Upsert::Created),
            409 => {
                let what = format!("PUT /collections/{collection}/items/{id}");
                let (st, body) = self
                    .send(
                        what.clone(),
                        self.req(
                            reqwest::Method::PUT,
                            &format!("/collections/{collection}/items/{id}"),
                        )
                        .json(item),
                    )
                    .await?;
                if (200..300).contains(&st) {
                    Ok(Upsert::Replaced)
                } else {
                    Err(Self::fail(what, st, &body))
                }
            }
            404 => Err(WorkloadError::Stac {
                what,
                status: st,
                body: format!(
                    "collection `{collection}` does not exist; create it with `provisioner collections create {collection}`"
                ),
            }),
            _ => Err(Self::fail(what, st, &body)),
        }
    }

    pub async fn get(&self, path_or_url: &str) -> Result<Option<Value>> {
        let (st, body) = self
            .send(
                format!("GET {path_or_url}"),
                self.req(reqwest::Method::GET, path_or_url),
            )
            .await?;
        match st {
            200 => Ok(Some(body)),
            404 => Ok(None),
            _ => Err(Self::fail(format!("GET {path_or_url}"), st, &body)),
        }
    }

    pub async fn put_url(&self, url: &str, doc: &Value) -> Result<()> {
        let (st, body) = self
            .send(
                format!("PUT {url}"),
                self.req(reqwest::Method::PUT, url).json(doc),
            )
            .await?;
        if (200..300).contains(&st) {
            Ok(())
        } else {
            Err(Self::fail(format!("PUT {url}"), st, &body))
        }
    }

    pub async fn create_collection(&self, doc: &Value) -> Result<()> {
        let id = doc["id"].as_str().unwrap_or_default();
        let what = format!("POST /collections ({id})");
        let (st, body) = self
            .send(
                what.clone(),
                self.req(reqwest::Method::POST, "/collections").json(doc),
            )
            .await?;
        match st {
            200 | 201 => Ok(()),
            409 => Err(WorkloadError::Stac {
                what,
                status: st,
                body: format!(
                    "collection `{id}` already exists; use `provisioner collections update {id}`"
                ),
            }),
            _ => Err(Self::fail(what, st, &body)),
        }
    }

    pub async fn update_collection(&self, doc: &Value) -> Result<()> {
        let id = doc["id"].as_str().unwrap_or_default();
        let what = format!("PUT /collections/{id}");
        let (st, body) = self
            .send(
                what.clone(),
                self.req(reqwest::Method::PUT, &format!("/collections/{id}"))
                    .json(doc),
            )
            .await?;
        match st {
            200 | 201 | 204 => Ok(()),
            404 => Err(WorkloadError::Stac {
                what,
                status: st,
                body: format!(
                    "collection `{id}` does not exist; use `provisioner collections create {id}`"
                ),
            }),
            _ => Err(Self::fail(what, st, &body)),
        }
    }

    /// Every item of a collection (follows `next` links).
    pub async fn items(&self, collection: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut url = format!("{}/collections/{collection}/items?limit=100", self.base);
        loop {
            let page = self.get(&url).await?.ok_or_else(|| WorkloadError::Stac {
                what: format!("GET {url}"),
                status: 404,
                body: format!("collection `{collection}` does not exist"),
            })?;
            out.extend(page["features"].as_array().cloned().unwrap_or_default());
            let next = page["links"]
                .as_array()
                .and_then(|ls| ls.iter().find(|l| l["rel"] == "next"))
                .and_then(|l| l["href"].as_str())
                .map(str::to_owned);
            match next {
                Some(n) if n != url => url = n,
                _ => return Ok(out),
            }
        }
    }

    pub async fn delete_item(&self, collection: &str, id: &str) -> Result<()> {
        let what = format!("DELETE /collections/{collection}/items/{id}");
        let (st, body) = self
            .send(
                what.clone(),
                self.req(
                    reqwest::Method::DELETE,
                    &format!("/collections/{collection}/items/{id}"),
                ),
            )
            .await?;
        if (200..300).contains(&st) || st == 404 {
            Ok(())
        } else {
            Err(Self::fail(what, st, &body))
        }
    }
}

/// The Zarr store roots (`s3://…/<id>.zarr`) an item's assets point into.
pub fn store_roots(item: &Value) -> Vec<String> {
    let mut roots: Vec<String> = item["assets"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, a)| {
            !a["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "thumbnail"))
        })
        .filter_map(|(_, a)| a.pointer("/alternate/s3/href").and_then(Value::as_str))
        .filter_map(|h| h.find(".zarr").map(|i| h[..i + 5].to_string()))
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

//! Rendering a release: values validated against the chart's schema, every
//! template rendered with Tera into objects, objects labelled as the release's
//! inventory, placed in the release's namespace, checked for secret tokens
//! outside Secrets, and custom resources validated against the CRDs we ship.
//!
//! Template vocabulary (Helm's, in Tera): `Values`, `Release` (Name,
//! Namespace, Revision, Service), `Chart` (Name, Version, AppVersion),
//! `Capabilities` (KubeVersion.{Version,Major,Minor}, APIVersions),
//! `Secrets.<name>` (tokens), `Outputs.<name>` (public values known at apply
//! time, e.g. a generated CA bundle), `Environment` (name, workload, cluster).
//! Filters: to_yaml, to_json, nindent(n), b64encode, sha256, quote,
//! required(msg), plus Tera's own (default, indent, join, …). Test:
//! `is semver(constraint=">=1.21.0")`. Function: `api_version(kind, candidates)`.

use std::collections::BTreeSet;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};
use tera::{Context, Kwargs, State, Tera, TeraResult};

use super::catalog::{Catalog, Chart};
use super::object::{
    self, LABEL_ENVIRONMENT, LABEL_MANAGED_BY, LABEL_RELEASE, MANAGER, Object, ObjectId,
};
use super::schema::{self, Mode};
use super::{Capabilities, ChartError};

/// What one release renders to.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// CRDs from `crds/`: applied first, waited for until Established.
    pub crds: Vec<Object>,
    /// Everything else, in apply order.
    pub objects: Vec<Object>,
}

impl Rendered {
    pub fn all(&self) -> impl Iterator<Item = &Object> {
        self.crds.iter().chain(&self.objects)
    }
}

/// The inputs of one render besides the chart's files.
pub struct RenderInput<'a> {
    pub release: &'a str,
    pub namespace: &'a str,
    pub environment: &'a str,
    pub revision: u64,
    /// Layered values (chart < stack < environment < --set), not yet validated.
    pub values: &'a Value,
    /// Names of the secrets the release receives (templates see tokens).
    pub secrets: &'a BTreeSet<String>,
    /// Names of the outputs the release receives (public values known at apply time).
    pub outputs: &'a BTreeSet<String>,
    pub capabilities: &'a Capabilities,
    /// Non-secret facts of the environment charts may read (`Environment`).
    pub env_context: &'a Value,
}

fn tera_err(e: impl std::fmt::Display) -> tera::Error {
    tera::Error::message(e.to_string())
}

fn to_json(v: &tera::Value) -> TeraResult<Value> {
    serde_json::to_value(v).map_err(tera_err)
}

/// A Tera instance with the chart vocabulary and these templates.
pub(super) fn compile(sources: &[(String, String)]) -> Result<Tera, ChartError> {
    let mut t = Tera::default();
    // YAML, not HTML: nothing is escaped.
    t.autoescape_on(Vec::<&'static str>::new());
    t.register_filter(
        "to_yaml",
        |v: tera::Value, _: Kwargs, _: &State| -> TeraResult<String> {
            let j = to_json(&v)?;
            let s = serde_saphyr::to_string(&j).map_err(tera_err)?;
            Ok(s.trim_end_matches('\n').to_owned())
        },
    );
    t.register_filter(
        "to_json",
        |v: tera::Value, _: Kwargs, _: &State| -> TeraResult<String> {
            serde_json::to_string(&to_json(&v)?).map_err(tera_err)
        },
    );
    t.register_filter(
        "nindent",
        |s: &str, kw: Kwargs, _: &State| -> TeraResult<String> {
            let n: usize = kw.must_get("n")?;
            let pad = " ".repeat(n);
            Ok(s.lines()
                .map(|l| {
                    if l.is_empty() {
                        String::new()
                    } else {
                        format!("\n{pad}{l}")
                    }
                })
                .collect::<String>())
        },
    );
    t.register_filter("b64encode", |s: &str, _: Kwargs, _: &State| {
        base64::engine::general_purpose::STANDARD.encode(s)
    });
    t.register_filter(
        "sha256",
        |v: tera::Value, _: Kwargs, _: &State| -> TeraResult<String> {
            let bytes = match v.as_str() {
                Some(s) => s.as_bytes().to_vec(),
                None => serde_json::to_vec(&to_json(&v)?).map_err(tera_err)?,
            };
            Ok(crate::core::digest::sha256(&bytes)
                .trim_start_matches("sha256:")
                .to_owned())
        },
    );
    t.register_filter(
        "quote",
        |v: tera::Value, _: Kwargs, _: &State| -> TeraResult<String> {
            let s = match to_json(&v)? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            serde_json::to_string(&s).map_err(tera_err)
        },
    );
    t.register_filter(
        "required",
        |v: tera::Value, kw: Kwargs, _: &State| -> TeraResult<tera::Value> {
            let empty = v.is_undefined() || v.is_none() || v.as_str() == Some("");
            if empty {
                let msg: Option<String> = kw.get("msg")?;
                return Err(tera::Error::message(
                    msg.unwrap_or_else(|| "a required value is missing".into()),
                ));
            }
            Ok(v)
        },
    );
    t.register_test(
        "semver",
        |v: &str, kw: Kwargs, _: &State| -> TeraResult<bool> {
            let c: String = kw.must_get("constraint")?;
            let req = semver::VersionReq::parse(&c).map_err(tera_err)?;
            let ver = Capabilities::parse_version(v)
                .ok_or_else(|| tera::Error::message(format!("`{v}` is not a version")))?;
            Ok(req.matches(&ver))
        },
    );
    t.register_function(
        "api_version",
        |kw: Kwargs, state: &State| -> TeraResult<String> {
            let kind: String = kw.must_get("kind")?;
            let candidates: Vec<String> = kw.must_get("candidates")?;
            let caps: Option<tera::Value> = state.get("Capabilities")?;
            let caps = caps.map(|c| to_json(&c)).transpose()?.unwrap_or_default();
            let served: Vec<&str> = caps
                .get("APIVersions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            candidates
                .iter()
                .find(|gv| served.contains(&format!("{gv}/{kind}").as_str()))
                .cloned()
                .ok_or_else(|| {
                    tera::Error::message(format!(
                        "the cluster serves {kind} in none of {}",
                        candidates.join(", ")
                    ))
                })
        },
    );
    t.add_raw_templates(sources.iter().map(|(n, s)| (n.as_str(), s.as_str())))
        .map_err(|e| ChartError::Template(e.to_string()))?;
    Ok(t)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReleaseContext<'a> {
    name: &'a str,
    namespace: &'a str,
    revision: u64,
    service: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ChartContext<'a> {
    name: &'a str,
    version: &'a str,
    app_version: Option<&'a str>,
}

/// Render `chart` for `input`. Pure: same inputs, same objects.
pub fn render(
    catalog: &Catalog,
    chart: &Chart,
    input: &RenderInput,
) -> Result<Rendered, ChartError> {
    if let Some(c) = &chart.meta.kube_version {
        let req = semver::VersionReq::parse(c).map_err(|e| ChartError::Parse {
            file: format!("{}/Chart.yaml", chart.dir),
            message: format!("kubeVersion `{c}`: {e}"),
            hint: "a semver range such as >=1.20.0".into(),
        })?;
        if !req.matches(&input.capabilities.version) {
            return Err(ChartError::KubeVersion {
                chart: chart.meta.name.clone(),
                constraint: c.clone(),
                version: input.capabilities.version.to_string(),
            });
        }
    }
    if let Some(s) = &chart.schema
        && let Some(v) = schema::validate(s, input.values, Mode::JsonSchema)
            .into_iter()
            .next()
    {
        return Err(ChartError::Values {
            file: format!("{}/values.schema.json", chart.dir),
            key: format!("releases.{}.{}", input.release, v.path),
            message: v.message,
            hint: format!(
                "fix the value in the environment's `releases.{}` (or the stack, or --set)",
                input.release
            ),
        });
    }
    let mut ctx = Context::new();
    ctx.insert("Values", input.values);
    ctx.insert(
        "Release",
        &ReleaseContext {
            name: input.release,
            namespace: input.namespace,
            revision: input.revision,
            service: MANAGER,
        },
    );
    ctx.insert(
        "Chart",
        &ChartContext {
            name: &chart.meta.name,
            version: &chart.meta.version,
            app_version: chart.meta.app_version.as_deref(),
        },
    );
    ctx.insert("Capabilities", &input.capabilities.context());
    let tokens: serde_json::Map<String, Value> = input
        .secrets
        .iter()
        .map(|n| (n.clone(), Value::String(object::secret_token(n))))
        .collect();
    ctx.insert("Secrets", &tokens);
    let outputs: serde_json::Map<String, Value> = input
        .outputs
        .iter()
        .map(|n| (n.clone(), Value::String(object::output_token(n))))
        .collect();
    ctx.insert("Outputs", &outputs);
    ctx.insert("Environment", input.env_context);

    let crd_index = catalog.crds();
    let mut seen = BTreeSet::new();
    let mut finish = |template: &str, body: Value| -> Result<Object, ChartError> {
        let o = finish_object(template, body, input, &crd_index)?;
        if !seen.insert(o.id.clone()) {
            return Err(ChartError::Invalid {
                object: o.id.key(),
                template: template.to_owned(),
                message: "rendered twice in this release".into(),
                hint: "give each object its own name".into(),
            });
        }
        Ok(o)
    };
    let mut crds = Vec::new();
    for (file, doc) in &chart.crds {
        crds.push(finish(file, doc.clone())?);
    }
    let mut objects = Vec::new();
    for name in &chart.templates {
        let text = chart
            .tera
            .render(name, &ctx)
            .map_err(|e| ChartError::Template(e.to_string()))?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| ChartError::Manifest {
                template: name.clone(),
                message: e.to_string(),
            })?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            objects.push(finish(name, doc)?);
        }
    }
    objects.sort_by_key(|o| (object::order(&o.id.kind), o.id.key()));
    crds.sort_by_key(|o| o.id.key());
    Ok(Rendered { crds, objects })
}

fn finish_object(
    template: &str,
    mut body: Value,
    input: &RenderInput,
    crds: &std::collections::BTreeMap<(String, String), &Value>,
) -> Result<Object, ChartError> {
    let invalid = |object: String, message: String, hint: &str| ChartError::Invalid {
        object,
        template: template.to_owned(),
        message,
        hint: hint.to_owned(),
    };
    let api_version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = body
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if api_version.is_empty() || kind.is_empty() || name.is_empty() {
        return Err(ChartError::Manifest {
            template: template.to_owned(),
            message: "every document needs apiVersion, kind and metadata.name".into(),
        });
    }
    let group = object::group_of(&api_version).to_owned();
    let crd = crds.get(&(group.clone(), kind.clone()));
    let cluster_scoped = object::cluster_scoped_builtin(&kind)
        || crd
            .and_then(|c| c.pointer("/spec/scope"))
            .and_then(Value::as_str)
            == Some("Cluster");
    let namespace = if cluster_scoped {
        None
    } else {
        let ns = body
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(input.namespace)
            .to_owned();
        if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("namespace".into(), Value::String(ns.clone()));
        }
        Some(ns)
    };
    let id = ObjectId {
        group: group.clone(),
        kind: kind.clone(),
        namespace,
        name,
    };
    object::set_label(&mut body, LABEL_MANAGED_BY, MANAGER);
    object::set_label(&mut body, LABEL_RELEASE, input.release);
    object::set_label(&mut body, LABEL_ENVIRONMENT, input.environment);

    // Secret values may only travel in a Secret's stringData.
    let strings = crate::core::json::leaves(&body)
        .into_iter()
        .filter_map(|(p, v)| Some((crate::core::json::render(&p), v.as_str()?)));
    for (path, s) in strings {
        if let Some(t) = object::output_tokens_in(s)
            .into_iter()
            .find(|t| !input.outputs.contains(*t))
        {
            return Err(invalid(
                id.key(),
                format!("{path} uses output `{t}`, which this release does not receive"),
                "declare it in the stack (certificates: …)",
            ));
        }
        for t in object::tokens_in(s) {
            if !input.secrets.contains(t) {
                return Err(invalid(
                    id.key(),
                    format!("{path} uses secret `{t}`, which this release does not receive"),
                    "add it to the release's `secrets:` in the stack",
                ));
            }
            if kind != "Secret" || !path.starts_with("stringData.") {
                return Err(invalid(
                    id.key(),
                    format!("{path} holds secret `{t}` outside a Secret's stringData"),
                    "put the value in a Secret's stringData and refer to it with secretKeyRef or a mounted volume",
                ));
            }
        }
    }

    if let Some(crd) = crd {
        let version = object::version_of(&api_version);
        let schema = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .and_then(|vs| {
                vs.iter()
                    .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
            })
            .and_then(|v| v.pointer("/schema/openAPIV3Schema"));
        match schema {
            None => {
                return Err(invalid(
                    id.key(),
                    format!("the CRD for {kind}.{group} has no version {version}"),
                    "use a version the CRD serves",
                ));
            }
            Some(s) => {
                // The API server checks apiVersion, kind and metadata itself; a
                // schema may still describe (or require) them, and then they stay.
                let mut checked = body.clone();
                let declared = |k: &str| {
                    s.pointer(&format!("/properties/{k}")).is_some()
                        || s.get("required")
                            .and_then(Value::as_array)
                            .is_some_and(|r| r.iter().any(|x| x == k))
                };
                if let Some(m) = checked.as_object_mut() {
                    for k in ["apiVersion", "kind", "metadata"] {
                        if !declared(k) {
                            m.remove(k);
                        }
                    }
                    // metadata is the API server's (labels, annotations, …): only what the
                    // schema itself says about it (usually name) is checked against it.
                    let meta_props = s
                        .pointer("/properties/metadata/properties")
                        .and_then(Value::as_object);
                    if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                        meta.retain(|k, _| meta_props.is_some_and(|p| p.contains_key(k)));
                    }
                }
                let v = schema::validate(s, &checked, Mode::Structural);
                if !v.is_empty() {
                    let list = v
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(invalid(
                        id.key(),
                        format!("does not match the {kind} schema: {list}"),
                        "the CRD we ship is the contract; fix the template (or the CRD)",
                    ));
                }
            }
        }
    }
    Ok(Object {
        id,
        body,
        template: template.to_owned(),
    })
}

/// Objects as the plan records them: key → body.
pub fn as_map(r: &Rendered) -> serde_json::Map<String, Value> {
    r.all().map(|o| (o.id.key(), o.body.clone())).collect()
}

/// The `Environment` templates see: non-secret facts only (no references).
pub fn env_context(
    env: &crate::env::model::Environment,
    images: &std::collections::BTreeMap<String, crate::image::Built>,
) -> Value {
    // A built image is run by digest, so a rebuilt image rolls out and a moved tag never does.
    let image = |w: &crate::env::model::Workload| match (&w.image, &env.registry) {
        (crate::env::model::WorkloadImage::Reference(r), _) => Some(r.clone()),
        (crate::env::model::WorkloadImage::Build(b), Some(reg)) => {
            images.get(&b.build).map(|built| crate::image::reference(&reg.url, built))
        }
        (crate::env::model::WorkloadImage::Build(_), None) => None,
    };
    let registry = env.registry.as_ref().map(|r| {
        json!({ "host": crate::image::registry_host(&r.url), "pull_secret": r.pull_secret })
    });
    let w = env.workload.as_ref().map(|w| {
        json!({
            "namespace": w.namespace, "image": image(w), "storage_class": w.storage_class,
            "stac_api_url": w.stac_api_url, "titiler_url": w.titiler_url, "collections": w.collections,
            "s3": { "bucket": w.s3.bucket, "prefix": w.s3.prefix, "endpoint": w.s3.endpoint, "region": w.s3.region, "path_style": w.s3.path_style },
        })
    });
    json!({
        "name": env.name,
        "cluster": { "kubernetes_version": env.cluster.kubernetes_version, "pod_cidr": env.cluster.pod_cidr.to_string(), "service_cidr": env.cluster.service_cidr.to_string(),
                     "dns_ip": crate::cluster::dns_ip(&env.cluster.service_cidr).map(|ip| ip.to_string()) },
        "workload": w,
        "registry": registry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::Catalog;

    fn catalog(extra: &[(&str, &str)]) -> Catalog {
        let mut files: Vec<(String, String)> = vec![
            ("charts/_lib/names.tera".into(), "{% component labels(name, release) %}app.kubernetes.io/name: {{ name }}\napp.kubernetes.io/instance: {{ release }}{% endcomponent labels %}".into()),
            ("charts/demo/Chart.yaml".into(), "name: demo\nversion: 0.1.0\nappVersion: \"1.0\"\nkubeVersion: \">=1.20.0\"\n".into()),
            ("charts/demo/values.yaml".into(), "replicas: 1\nconfig: {a: 1}\nimage: busybox\n".into()),
            ("charts/demo/values.schema.json".into(), r#"{"type":"object","properties":{"replicas":{"type":"integer","minimum":1}}}"#.into()),
            ("charts/demo/templates/cm.yaml".into(), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ Release.Name }}\n  labels:\n    {{ <labels name=\"demo\" release={Release.Name} /> | nindent(n=4) }}\ndata:\n  config: {{ Values.config | to_json | quote }}\n".into()),
            ("charts/demo/templates/cron.yaml".into(), "apiVersion: {{ api_version(kind=\"CronJob\", candidates=[\"batch/v1\", \"batch/v1beta1\"]) }}\nkind: CronJob\nmetadata:\n  name: tick\n  annotations:\n    checksum/config: {{ Values.config | sha256 }}\n    new: \"{{ Capabilities.KubeVersion.Version is semver(constraint=\">=1.21.0\") }}\"\nspec:\n  schedule: \"* * * * *\"\n".into()),
            ("charts/demo/templates/secret.yaml".into(), "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: {{ Secrets.password }}\n".into()),
            ("stacks/s.yaml".into(), "releases:\n  - {name: demo, chart: demo, namespace: ns}\n".into()),
        ];
        files.extend(
            extra
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
        );
        Catalog::from_files(files).unwrap()
    }

    fn render_with(cat: &Catalog, values: Value, version: &str) -> Result<Rendered, ChartError> {
        let caps = Capabilities::for_version(&Capabilities::parse_version(version).unwrap());
        let secrets: BTreeSet<String> = ["password".to_owned()].into();
        let env = json!({"name": "t"});
        let chart = cat.chart("demo", "demo")?;
        let mut v = chart.values.clone();
        crate::charts::values::merge(&mut v, &values);
        render(
            cat,
            chart,
            &RenderInput {
                release: "demo",
                namespace: "ns",
                environment: "t",
                revision: 1,
                values: &v,
                secrets: &secrets,
                outputs: &BTreeSet::new(),
                capabilities: &caps,
                env_context: &env,
            },
        )
    }

    #[test]
    fn renders_helpers_filters_and_capabilities() {
        let cat = catalog(&[]);
        let old = render_with(&cat, json!({}), "v1.20.2").unwrap();
        let keys: Vec<String> = old.objects.iter().map(|o| o.id.key()).collect();
        assert_eq!(
            keys,
            vec![
                "Secret/ns/creds",
                "ConfigMap/ns/demo",
                "CronJob.batch/ns/tick"
            ]
        );
        let cm = &old.objects[1].body;
        assert_eq!(cm.pointer("/data/config").unwrap(), "{\"a\":1}");
        assert_eq!(
            cm.pointer("/metadata/labels/app.kubernetes.io~1name")
                .unwrap(),
            "demo"
        );
        assert_eq!(
            cm.pointer("/metadata/labels/provisioner.io~1release")
                .unwrap(),
            "demo"
        );
        assert_eq!(cm.pointer("/metadata/namespace").unwrap(), "ns");
        let cron = &old.objects[2].body;
        assert_eq!(cron["apiVersion"], "batch/v1beta1");
        assert_eq!(cron.pointer("/metadata/annotations/new").unwrap(), "false");
        assert_eq!(
            old.objects[0].body.pointer("/stringData/password").unwrap(),
            "((secret:password))"
        );
        let new = render_with(&cat, json!({}), "v1.31.0").unwrap();
        assert_eq!(new.objects[2].body["apiVersion"], "batch/v1");
        // Deterministic, and a changed value moves the checksum annotation.
        assert_eq!(render_with(&cat, json!({}), "v1.20.2").unwrap(), old);
        let changed = render_with(&cat, json!({"config": {"a": 2}}), "v1.20.2").unwrap();
        assert_ne!(
            changed.objects[2]
                .body
                .pointer("/metadata/annotations/checksum~1config"),
            cron.pointer("/metadata/annotations/checksum~1config")
        );
    }

    #[test]
    fn maps_render_in_their_own_order_every_time() {
        let cat = catalog(&[(
            "charts/demo/templates/many.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many\n  annotations:\n    checksum: {{ Values.big | sha256 }}\ndata:\n  yaml: {{ Values.big | to_yaml | quote }}\n",
        )]);
        let big = json!({"big": {"zeta": 1, "alpha": 2, "mid": {"b": 1, "a": 2}, "k1": 1, "k2": 2, "k3": 3, "k4": 4, "k5": 5}});
        let first = render_with(&cat, big.clone(), "v1.20.2").unwrap();
        for _ in 0..5 {
            assert_eq!(render_with(&cat, big.clone(), "v1.20.2").unwrap(), first);
        }
        let cm = first.objects.iter().find(|o| o.id.name == "many").unwrap();
        assert!(
            cm.body["data"]["yaml"]
                .as_str()
                .unwrap()
                .starts_with("zeta: 1\nalpha: 2"),
            "{}",
            cm.body
        );
    }

    #[test]
    fn bad_values_templates_and_secrets_are_named() {
        let cat = catalog(&[]);
        let e = render_with(&cat, json!({"replicas": "two"}), "v1.20.2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("charts/demo/values.schema.json")
                && e.contains("releases.demo.replicas")
                && e.contains("expected integer"),
            "{e}"
        );
        let e = render_with(&cat, json!({}), "v1.19.0")
            .unwrap_err()
            .to_string();
        assert!(e.contains(">=1.20.0"), "{e}");

        let leaky = catalog(&[(
            "charts/demo/templates/leak.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak}\ndata: {url: \"postgres://u:{{ Secrets.password }}@db\"}\n",
        )]);
        let e = render_with(&leaky, json!({}), "v1.20.2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ConfigMap/ns/leak") && e.contains("outside a Secret"),
            "{e}"
        );

        let broken = catalog(&[(
            "charts/demo/templates/broken.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ Values.nope.deeper }}\n",
        )]);
        let e = render_with(&broken, json!({}), "v1.20.2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("charts/demo/templates/broken.yaml") && e.contains(":4"),
            "{e}"
        );
    }

    #[test]
    fn custom_resources_are_checked_against_the_crds_we_ship() {
        let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.org}\nspec:\n  group: example.org\n  scope: Namespaced\n  names: {kind: Widget, plural: widgets}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            required: [size]\n            properties:\n              size: {type: integer}\n";
        let ok = catalog(&[
            ("charts/demo/crds/widget.yaml", crd),
            (
                "charts/demo/templates/w.yaml",
                "apiVersion: example.org/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 3}\n",
            ),
        ]);
        let r = render_with(&ok, json!({}), "v1.20.2").unwrap();
        assert_eq!(
            r.crds[0].id.key(),
            "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.org"
        );
        assert!(
            r.objects
                .iter()
                .any(|o| o.id.key() == "Widget.example.org/ns/w")
        );
        let bad = catalog(&[
            ("charts/demo/crds/widget.yaml", crd),
            (
                "charts/demo/templates/w.yaml",
                "apiVersion: example.org/v1\nkind: Widget\nmetadata: {name: w}\nspec: {sise: 3}\n",
            ),
        ]);
        let e = render_with(&bad, json!({}), "v1.20.2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.size: is required") && e.contains("spec.sise: unknown field"),
            "{e}"
        );
    }
}

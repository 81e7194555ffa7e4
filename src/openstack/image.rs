//! `image.*`: node images baked the way Packer's OpenStack builder does it —
//! boot a builder server from the base image, provision it over SSH (the
//! cluster layer's engine, through the bastion when there is one), capture
//! it with `createImage`, wait for the image to become active, tag it, and
//! delete the builder whatever happened.
//!
//! Crash safety: the builder carries the image's ownership tags plus
//! `pv-builder`, and the image the recipe digest as a property, so a build
//! killed at any point leaves nothing a rerun or `destroy` does not find:
//! `find` deletes the builders of the address and any of its images that is
//! not an active image of the same recipe, and adopts one that is.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::Svc;
use super::neutron::{self, SUBNETS, str_attr, tags};
use super::{Attrs, Cx, Kind, rec_id};
use crate::core::Address;
use crate::image::node::{Loaded, PackagesFrom};
use crate::provider::{Live, ProviderError};
use crate::ssh::Target;
use crate::ssh::quote::q;
use crate::state::Record;

pub struct NodeImage;

/// Tag that marks a builder server (besides the image's ownership tags).
pub const BUILDER_TAG: &str = "pv-builder";
/// Image property holding the recipe digest the image was built from.
const DIGEST_PROP: &str = "provisioner_recipe_digest";
/// Where the recipe's files are uploaded on the builder.
const STAGING: &str = "/var/tmp/provisioner-image";

async fn glance(cx: &Cx, id: &str) -> Result<Option<Value>, ProviderError> {
    match cx.api.get(Svc::Image, &["images", id], &[]).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn status(i: &Value) -> &str {
    i.get("status").and_then(Value::as_str).unwrap_or("unknown")
}

fn image_live(i: &Value, attrs: &Attrs) -> Live {
    let id = i.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut l = super::live(id.clone(), attrs);
    l.outputs.insert("id".into(), json!(id));
    l.outputs.insert("size".into(), i.get("size").cloned().unwrap_or(Value::Null));
    l
}

/// Images of this environment (all, or those of `addr`).
async fn owned_images(cx: &Cx, addr: Option<&Address>) -> Result<Vec<Value>, ProviderError> {
    let mut q = vec![("tag", format!("{}{}", neutron::TAG_ENV, cx.env))];
    if let Some(a) = addr {
        q.push(("tag", format!("{}{a}", neutron::TAG_ADDR)));
    }
    let v = cx.api.get(Svc::Image, &["images"], &q).await?;
    Ok(v.get("images").and_then(Value::as_array).cloned().unwrap_or_default())
}

async fn builders(cx: &Cx, addr: &Address) -> Result<Vec<String>, ProviderError> {
    let mut t = tags(&cx.env, addr);
    t.push(BUILDER_TAG.into());
    let servers = super::server::owned_by(cx, ("tags", t.join(","))).await?;
    Ok(servers
        .iter()
        .filter_map(|s| s.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect())
}

/// Delete every builder of `addr` (a build that died leaves one behind).
async fn remove_builders(cx: &Cx, addr: &Address) -> Result<(), ProviderError> {
    for id in builders(cx, addr).await? {
        tracing::warn!(address = %addr, server = %id, "deleting a builder server left by an interrupted build");
        super::server::delete_and_wait(cx, &id).await?;
    }
    Ok(())
}

async fn delete_image(cx: &Cx, id: &str) -> Result<(), ProviderError> {
    cx.api.delete(Svc::Image, &["images", id]).await?;
    Ok(())
}

/// The images of `addr`: tagged, or (killed between createImage and tagging)
/// named as this build names them with this environment's property.
async fn images_of(cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Vec<Value>, ProviderError> {
    let mut all = owned_images(cx, Some(addr)).await?;
    let named = cx
        .api
        .get(Svc::Image, &["images"], &[("name", str_attr(attrs, "name").to_owned())])
        .await?;
    for i in named.get("images").and_then(Value::as_array).into_iter().flatten() {
        let ours = i.get("provisioner_environment").and_then(Value::as_str) == Some(cx.env.as_str())
            && i.get("provisioner_address").and_then(Value::as_str) == Some(addr.as_str());
        if ours && !all.iter().any(|a| a.get("id") == i.get("id")) {
            all.push(i.clone());
        }
    }
    Ok(all)
}

/// Leftovers of `addr` removed; an active image of the same recipe returned.
async fn sweep(cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Option<Live>, ProviderError> {
    remove_builders(cx, addr).await?;
    let want = attrs.get("digest").and_then(Value::as_str);
    let mut keep = None;
    for i in images_of(cx, addr, attrs).await? {
        let id = i.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let same = i.get(DIGEST_PROP).and_then(Value::as_str) == want;
        if same && status(&i) == "active" && keep.is_none() {
            keep = Some(image_live(&i, attrs));
        } else {
            tracing::warn!(address = %addr, image = %id, status = status(&i), "deleting an image this address owns that is not a finished build of its recipe");
            delete_image(cx, &id).await?;
        }
    }
    Ok(keep)
}

/// How to reach the builder: its fixed address, through the bastion if the environment has one.
fn target(attrs: &Attrs, address: String) -> Target {
    let via = attrs.get("via").filter(|v| v.is_object()).map(|v| {
        Box::new(Target {
            node: "bastion".into(),
            address: v.get("address").and_then(Value::as_str).unwrap_or_default().to_owned(),
            port: 22,
            user: v.get("user").and_then(Value::as_str).unwrap_or("debian").to_owned(),
            via: None,
            host_key: None,
        })
    });
    Target {
        node: "image-builder".into(),
        address,
        port: 22,
        user: str_attr(attrs, "ssh_user").to_owned(),
        via,
        host_key: None,
    }
}

async fn boot_builder(cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<(String, String), ProviderError> {
    let subnet = neutron::show(&cx.api, SUBNETS, str_attr(attrs, "network"))
        .await?
        .ok_or_else(|| ProviderError::fatal(format!("{addr}: its subnet is gone")))?;
    let network_id = subnet.get("network_id").and_then(Value::as_str).unwrap_or_default();
    let mut t = tags(&cx.env, addr);
    t.push(BUILDER_TAG.into());
    let sgs: Vec<Value> = attrs
        .get("security_groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|id| json!({ "name": id }))
        .collect();
    let body = json!({ "server": {
        "name": format!("{}-builder", str_attr(attrs, "name")),
        "flavorRef": super::server::flavor_id(cx, str_attr(attrs, "flavor")).await?,
        "imageRef": super::server::image_id(cx, str_attr(attrs, "base")).await?,
        "key_name": str_attr(attrs, "keypair"),
        "networks": [{ "uuid": network_id }],
        "security_groups": sgs,
        "tags": t,
        "metadata": { "role": "image-builder" },
    }});
    let v = cx.api.post(Svc::Compute, &["servers"], &body).await?;
    let id = v.pointer("/server/id").and_then(Value::as_str).unwrap_or_default().to_owned();
    tracing::info!(address = %addr, server = %id, "builder server booting");
    let s = super::server::wait_active(cx, addr, &id).await?;
    let ip = super::server::fixed_address(&s)
        .ok_or_else(|| ProviderError::fatal(format!("{addr}: builder {id} has no fixed address")))?;
    Ok((id, ip))
}

fn ssh_error(addr: &Address, e: crate::ssh::SshError) -> ProviderError {
    ProviderError::new(e.class(), format!("{addr}: builder: {e}"))
}

/// Provision the builder: wait for SSH and cloud-init, upload the recipe's
/// files (and packages, when they come from here), run the script.
async fn provision(cx: &Cx, addr: &Address, attrs: &Attrs, t: &Target) -> Result<(), ProviderError> {
    let ssh = &cx.ssh;
    let timeout = Duration::from_secs(cx.timeouts.create);
    let up = crate::core::wait::until(timeout, Duration::from_secs(3), || async {
        Ok::<_, ProviderError>(ssh.try_run(t, "true", Duration::from_secs(15)).await.ok().map(|_| ()))
    })
    .await?;
    if up.is_none() {
        return Err(ProviderError::transient(format!("{addr}: builder {} did not answer SSH within {timeout:?}", t.label())));
    }
    let dir = str_attr(attrs, "recipe").to_owned();
    let recipe = tokio::task::spawn_blocking(move || Loaded::load(&dir))
        .await
        .map_err(|e| ProviderError::fatal(format!("{addr}: {e}")))?
        .map_err(|e| ProviderError::fatal(e.to_string()))?;
    if Some(recipe.digest.as_str()) != attrs.get("digest").and_then(Value::as_str) {
        return Err(ProviderError::conflict(format!("{addr}: the recipe changed since the plan; plan again")));
    }
    ssh.run(t, "if command -v cloud-init >/dev/null; then cloud-init status --wait >/dev/null || true; fi")
        .await
        .map_err(|e| ssh_error(addr, e))?;
    let mut files: Vec<(String, u32, Vec<u8>)> = recipe
        .uploads()
        .into_iter()
        .map(|(p, b)| (format!("{STAGING}/{p}"), 0o600, b))
        .collect();
    files.push((format!("{STAGING}/provision.sh"), 0o700, recipe.script(STAGING).into_bytes()));
    ssh.put_all(t, files).await.map_err(|e| ssh_error(addr, e))?;
    if recipe.recipe.packages_from == PackagesFrom::Host && !recipe.recipe.packages.is_empty() {
        let cache = crate::image::cache::root();
        let specs = recipe.recipe.packages.clone();
        let debs = tokio::task::spawn_blocking(move || {
            let pkgs = crate::image::debian::resolve(&specs, &cache)?;
            crate::image::debian::fetch(&pkgs, &cache)
        })
        .await
        .map_err(|e| ProviderError::fatal(format!("{addr}: {e}")))?
        .map_err(|e| ProviderError::fatal(e.to_string()))?;
        for deb in debs {
            let bytes = std::fs::read(&deb).map_err(|e| ProviderError::fatal(format!("{}: {e}", deb.display())))?;
            let name = deb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let sha = crate::core::digest::sha256_hex(&bytes);
            ssh.put_file(t, &format!("{STAGING}/debs/{name}"), 0o644, deb, &sha)
                .await
                .map_err(|e| ssh_error(addr, e))?;
        }
    }
    tracing::info!(address = %addr, "provisioning the builder");
    let out = ssh
        .try_run(t, &format!("sh {}", q(&format!("{STAGING}/provision.sh"))), timeout)
        .await
        .map_err(|e| ssh_error(addr, e))?;
    if out.status != 0 {
        let tail: Vec<&str> = out.stderr.lines().chain(out.stdout.lines()).rev().take(8).collect();
        return Err(ProviderError::fatal(format!(
            "the recipe failed on the builder (exit {}):\n    {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
        )));
    }
    Ok(())
}

/// createImage, then wait for Glance to call it active; ownership tags added.
async fn capture(cx: &Cx, addr: &Address, attrs: &Attrs, server: &str) -> Result<Value, ProviderError> {
    let name = str_attr(attrs, "name");
    let digest = attrs.get("digest").and_then(Value::as_str).unwrap_or_default();
    let v = cx
        .api
        .post(
            Svc::Compute,
            &["servers", server, "action"],
            &json!({ "createImage": { "name": name, "metadata": {
                DIGEST_PROP: digest,
                "provisioner_environment": cx.env,
                "provisioner_address": addr.to_string(),
            } } }),
        )
        .await?;
    let id = v
        .get("image_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::fatal(format!("{addr}: createImage answered without an image id: {v}")))?
        .to_owned();
    // Tagged at once, so an interrupted wait still leaves an image `find` recognises.
    for tag in tags(&cx.env, addr) {
        // Glance refuses a body here.
        cx.api
            .call(super::client::Method::Put, Svc::Image, &["images", &id, "tags", &tag], &[], None)
            .await?;
    }
    let timeout = Duration::from_secs(cx.timeouts.create);
    cx.wait_for(&format!("{addr}: image {id} to become active"), timeout, || async {
        let i = glance(cx, &id).await?.ok_or_else(|| ProviderError::transient(format!("{addr}: image {id} not visible yet")))?;
        match status(&i) {
            "active" => Ok(Some(i)),
            s @ ("killed" | "deleted" | "deactivated") => {
                Err(ProviderError::fatal(format!("{addr}: image {id} went {s} while being saved")))
            }
            _ => Ok(None),
        }
    })
    .await
}

#[async_trait]
impl Kind for NodeImage {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let Some(i) = glance(cx, rec_id(rec)?).await? else {
            return Ok(None);
        };
        if status(&i) != "active" {
            return Ok(None);
        }
        let attrs = super::observed(rec, &[("name", i.get("name").cloned())]);
        Ok(Some(image_live(&i, &attrs)))
    }

    async fn find(&self, cx: &Cx, addr: &Address, attrs: &Attrs, _interrupted: bool) -> Result<Option<Live>, ProviderError> {
        sweep(cx, addr, attrs).await
    }

    async fn create(&self, cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        if let Some(found) = sweep(cx, addr, attrs).await? {
            return Ok(found);
        }
        let t0 = std::time::Instant::now();
        let (server, ip) = boot_builder(cx, addr, attrs).await?;
        let t = target(attrs, ip);
        let built = async {
            provision(cx, addr, attrs, &t).await?;
            capture(cx, addr, attrs, &server).await
        }
        .await;
        // The builder goes whatever happened; a failure to delete it is said, and
        // the next run's sweep removes it.
        if let Err(e) = super::server::delete_and_wait(cx, &server).await {
            tracing::warn!(address = %addr, server = %server, error = %e, "could not delete the builder; the next run or destroy will");
        }
        cx.ssh.forget(&t);
        let image = built?;
        tracing::info!(address = %addr, secs = t0.elapsed().as_secs(), "node image built");
        Ok(image_live(&image, attrs))
    }

    /// Only the builder's parameters changed (network, flavor, bastion): the image stays.
    async fn update(&self, cx: &Cx, rec: &Record, attrs: &Attrs) -> Result<Live, ProviderError> {
        let i = glance(cx, rec_id(rec)?)
            .await?
            .ok_or_else(|| ProviderError::transient(format!("image {} is gone", rec_id(rec).unwrap_or_default())))?;
        Ok(image_live(&i, attrs))
    }

    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        let id = rec_id(rec)?;
        match glance(cx, id).await? {
            Some(i) => {
                if let Some(addr) = neutron::owner(&i, &cx.env) {
                    remove_builders(cx, &addr).await?;
                }
                delete_image(cx, id).await
            }
            // Swept from a lost state, the record may be the builder itself
            // (it carries the image's ownership tags).
            None => {
                let builder = super::server::owned_by(cx, ("tags", format!("{}{},{BUILDER_TAG}", neutron::TAG_ENV, cx.env)))
                    .await?
                    .into_iter()
                    .any(|s| s.get("id").and_then(Value::as_str) == Some(id));
                if builder {
                    super::server::delete_and_wait(cx, id).await?;
                }
                Ok(())
            }
        }
    }

    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        let mut out = Vec::new();
        for i in owned_images(cx, None).await? {
            if let Some(addr) = neutron::owner(&i, &cx.env) {
                out.push((addr, image_live(&i, &Attrs::new())));
            }
        }
        Ok(out)
    }
}


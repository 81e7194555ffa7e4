//! Day-2 tasks (`provisioner etcd …`): run by the provider that offers them,
//! against the system state records. A task that changes the system runs
//! under the state lock, after the same approval as a plan: what it does is
//! shown as changes, and data it replaces needs `--allow-data-loss`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::approval::{self, Approval};
use super::diff::{Action, Change};
use super::resource::Layer;
use super::session::{Operation, Plan, Session, Ui};
use crate::Error;
use crate::core::Address;
use crate::provider::Task;
use crate::state::Record;

impl Session {
    /// Run `task`; what it did, as the provider reports it.
    pub async fn task(
        &self,
        task: &Task,
        approval: &Approval,
        lock_timeout: Duration,
        ui: &dyn Ui,
    ) -> Result<Value, Error> {
        let provider =
            self.registry.get("etcd").cloned().ok_or_else(|| {
                Error::Usage(format!("`{}` needs the cluster layer", task.command()))
            })?;
        let run = |records: BTreeMap<Address, Record>| {
            let provider = provider.clone();
            async move {
                match provider.task(task, &records).await {
                    Some(r) => r.map_err(|source| Error::Provider {
                        context: task.command().to_owned(),
                        source,
                    }),
                    None => Err(Error::Usage(format!(
                        "`{}` is not offered by this environment's layers",
                        task.command()
                    ))),
                }
            }
        };
        let Task::EtcdRestore { snapshot } = task else {
            // Snapshots add a backup and lists read: nothing to approve or lock.
            return run(super::session::filled(&self.store.load().await?)).await;
        };
        let lock = self
            .store
            .lock(Operation::Restore.as_str(), lock_timeout)
            .await?;
        let result = async {
            let state = self.store.load().await?;
            let changes: Vec<Change> = state
                .resources
                .keys()
                .filter(|a| a.kind() == "etcd")
                .map(|a| Change {
                    address: a.clone(),
                    kind: "etcd".into(),
                    layer: Layer::Cluster,
                    action: Action::Replace,
                    reason: Some(format!(
                        "its data is replaced by snapshot {snapshot} (the current data is moved aside on the node, not deleted)"
                    )),
                    fields: Vec::new(),
                    depends_on: Vec::new(),
                    data_loss: true,
                    basis: None,
                    objects: Vec::new(),
                })
                .collect();
            let plan = Plan {
                operation: Operation::Restore,
                targets: Vec::new(),
                state,
                swept: BTreeMap::new(),
                desired: Vec::new(),
                changes,
                notes: vec![
                    "the control plane stops while etcd is restored; kubelets and kube-proxy restart after".into(),
                ],
            };
            ui.show_plan(&self.doc(&plan));
            approval::decide(Operation::Restore, self.env_name(), &plan.changes, approval, ui)?;
            run(super::session::filled(&plan.state)).await
        }
        .await;
        lock.release().await?;
        result
    }
}

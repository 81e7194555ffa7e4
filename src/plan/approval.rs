//! Whether a plan may be applied: the question a person answers, the refusal
//! when nobody can answer, and consent for changes that lose data. Decided
//! before the first change; a refusal changes nothing.
//!
//! The rules (README "Approval"):
//! - a plan without changes asks nothing;
//! - a change flagged as data loss (a REPLACE or delete of a server, volume,
//!   bucket, PVC, …) needs `--allow-data-loss` naming it (or `=all`), even
//!   with `--auto-approve` — except in `destroy`, where approving the destroy
//!   is the consent for the environment's own resources;
//! - a saved plan (`up --plan FILE`) was reviewed when it was made: no question;
//! - otherwise `--auto-approve` skips the question, a terminal answers it
//!   (the environment's name for `destroy` and for data loss, `yes` otherwise),
//!   and without a terminal the run is refused with the flag CI must pass.

use serde::Serialize;

use super::diff::{Action, Change};
use super::session::Operation;
use crate::core::Address;

/// What `--allow-data-loss` consented to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DataLossConsent {
    #[default]
    None,
    All,
    /// Addresses, unindexed bases (`server.worker`) or kinds (`volume`), as `--target` takes them.
    Some(Vec<String>),
}

impl DataLossConsent {
    /// From the values of repeated `--allow-data-loss` flags (`all` anywhere means all).
    pub fn from_flags(values: &[String]) -> Self {
        let items: Vec<String> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if items.iter().any(|s| s == "all") {
            Self::All
        } else if items.is_empty() {
            Self::None
        } else {
            Self::Some(items)
        }
    }

    fn covers(&self, a: &Address) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Some(items) => items.iter().any(|i| a.matches(i)),
        }
    }
}

/// How this run may be approved.
#[derive(Debug, Clone, Default)]
pub struct Approval {
    pub auto_approve: bool,
    pub allow_data_loss: DataLossConsent,
    /// Applying a saved plan: it was reviewed when it was written.
    pub saved_plan: bool,
}

/// The question put to the person at the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// Type `yes`.
    Yes,
    /// Type the environment's name (destroy, data loss).
    Name(String),
}

impl Question {
    pub fn accepts(&self, answer: &str) -> bool {
        match self {
            Question::Yes => answer.trim() == "yes",
            Question::Name(n) => answer.trim() == n,
        }
    }
}

/// Who can answer: the command line implements it over the terminal.
pub trait Confirm {
    /// Whether a person can answer (stdin is a terminal).
    fn interactive(&self) -> bool;
    /// Ask; the answer as typed (None at end of input).
    fn ask(&self, prompt: &str) -> Option<String>;
}

/// A change that loses data, as listed in a refusal.
#[derive(Debug, Clone, Serialize)]
pub struct Flagged {
    pub address: Address,
    pub action: Action,
    pub reason: String,
}

#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    #[error("refused: this plan loses data and --allow-data-loss does not name {}:\n{}\n  hint: review these changes; if the data may go, pass --allow-data-loss={} (or --allow-data-loss=all); nothing was changed",
        if changes.len() == 1 { "it" } else { "them" },
        changes.iter().map(|c| format!("    {} {:?}: {}", c.address, c.action, c.reason)).collect::<Vec<_>>().join("\n"),
        changes.iter().map(|c| c.address.to_string()).collect::<Vec<_>>().join(","))]
    DataLoss { changes: Vec<Flagged> },
    #[error(
        "refused: `{operation}` changes things and stdin is not a terminal, so nobody can approve the plan\n  hint: in CI, review `provisioner plan {environment} --out FILE` and apply it with `provisioner up {environment} --plan FILE`, or pass --auto-approve; nothing was changed"
    )]
    NoTerminal {
        operation: String,
        environment: String,
    },
    #[error("declined: the answer was not `{expected}`; nothing was changed")]
    Declined { expected: String },
}

/// Decide, asking `who` if needed. Ok means: go ahead.
pub fn decide(
    operation: Operation,
    environment: &str,
    changes: &[Change],
    approval: &Approval,
    who: &dyn Confirm,
) -> Result<(), Refusal> {
    let work: Vec<&Change> = changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .collect();
    if work.is_empty() {
        return Ok(());
    }
    // A release can lose data while it is only updated: one of its objects (a PVC, a CRD) goes.
    let flagged: Vec<&Change> = work.iter().copied().filter(|c| c.data_loss).collect();
    if operation != Operation::Destroy {
        let refused: Vec<Flagged> = flagged
            .iter()
            .filter(|c| !approval.allow_data_loss.covers(&c.address))
            .map(|c| {
                let lost: Vec<String> = c
                    .objects
                    .iter()
                    .filter(|o| o.data_loss)
                    .map(|o| format!("{} {:?}", o.key, o.action).to_lowercase())
                    .collect();
                let reason = if lost.is_empty() {
                    c.reason.clone().unwrap_or_else(|| "it holds data".into())
                } else {
                    format!("loses the data of {}", lost.join(", "))
                };
                Flagged {
                    address: c.address.clone(),
                    action: c.action,
                    reason,
                }
            })
            .collect();
        if !refused.is_empty() {
            return Err(Refusal::DataLoss { changes: refused });
        }
    }
    if approval.saved_plan || approval.auto_approve {
        return Ok(());
    }
    if !who.interactive() {
        return Err(Refusal::NoTerminal {
            operation: operation.as_str().to_owned(),
            environment: environment.to_owned(),
        });
    }
    let question = if operation == Operation::Destroy || !flagged.is_empty() {
        Question::Name(environment.to_owned())
    } else {
        Question::Yes
    };
    let prompt = match &question {
        Question::Yes => {
            format!("Apply these changes to `{environment}`? Only `yes` is accepted: ")
        }
        Question::Name(n) if operation == Operation::Destroy => {
            format!("Destroy everything `{n}` owns? Type the environment's name to confirm: ")
        }
        Question::Name(n) => {
            format!("This plan loses data. Type the environment's name (`{n}`) to apply it: ")
        }
    };
    match who.ask(&prompt) {
        Some(a) if question.accepts(&a) => Ok(()),
        _ => Err(Refusal::Declined {
            expected: match question {
                Question::Yes => "yes".into(),
                Question::Name(n) => n,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::resource::Layer;
    use std::cell::RefCell;

    struct Person {
        tty: bool,
        answer: Option<&'static str>,
        asked: RefCell<Vec<String>>,
    }

    impl Confirm for Person {
        fn interactive(&self) -> bool {
            self.tty
        }
        fn ask(&self, prompt: &str) -> Option<String> {
            self.asked.borrow_mut().push(prompt.to_owned());
            self.answer.map(str::to_owned)
        }
    }

    fn person(tty: bool, answer: Option<&'static str>) -> Person {
        Person {
            tty,
            answer,
            asked: RefCell::new(Vec::new()),
        }
    }

    fn change(addr: &str, action: Action, data_loss: bool) -> Change {
        let address = Address::parse(addr).unwrap();
        Change {
            kind: address.kind().to_owned(),
            address,
            layer: Layer::Cloud,
            action,
            reason: None,
            fields: vec![],
            depends_on: vec![],
            data_loss,
            basis: None,
            objects: vec![],
        }
    }

    #[test]
    fn no_changes_ask_nothing() {
        let p = person(false, None);
        decide(
            Operation::Up,
            "e",
            &[change("network.main", Action::NoOp, false)],
            &Approval::default(),
            &p,
        )
        .unwrap();
        assert!(p.asked.borrow().is_empty());
    }

    #[test]
    fn without_a_terminal_only_auto_approve_or_a_saved_plan_go_ahead() {
        let plan = [change("network.main", Action::Create, false)];
        let p = person(false, None);
        assert!(matches!(
            decide(Operation::Up, "e", &plan, &Approval::default(), &p),
            Err(Refusal::NoTerminal { .. })
        ));
        decide(
            Operation::Up,
            "e",
            &plan,
            &Approval {
                auto_approve: true,
                ..Default::default()
            },
            &p,
        )
        .unwrap();
        decide(
            Operation::Up,
            "e",
            &plan,
            &Approval {
                saved_plan: true,
                ..Default::default()
            },
            &p,
        )
        .unwrap();
        assert!(p.asked.borrow().is_empty());
    }

    #[test]
    fn data_loss_needs_consent_even_with_auto_approve() {
        let plan = [
            change("server.worker[1]", Action::Replace, true),
            change("volume.data[0]", Action::Delete, true),
            change("network.main", Action::Update, false),
        ];
        let auto = |c: DataLossConsent| Approval {
            auto_approve: true,
            allow_data_loss: c,
            saved_plan: false,
        };
        let p = person(false, None);
        match decide(Operation::Up, "e", &plan, &auto(DataLossConsent::None), &p) {
            Err(Refusal::DataLoss { changes }) => assert_eq!(changes.len(), 2),
            other => panic!("{other:?}"),
        }
        // Naming one is not enough; naming both (a base and a kind) is.
        let one = DataLossConsent::from_flags(&["server.worker".into()]);
        match decide(Operation::Up, "e", &plan, &auto(one), &p) {
            Err(Refusal::DataLoss { changes }) => {
                assert_eq!(changes[0].address.as_str(), "volume.data[0]")
            }
            other => panic!("{other:?}"),
        }
        decide(
            Operation::Up,
            "e",
            &plan,
            &auto(DataLossConsent::from_flags(
                &["server.worker,volume".into()],
            )),
            &p,
        )
        .unwrap();
        decide(
            Operation::Up,
            "e",
            &plan,
            &auto(DataLossConsent::from_flags(&["all".into()])),
            &p,
        )
        .unwrap();
    }

    #[test]
    fn a_terminal_answers_yes_or_the_name() {
        let plan = [change("network.main", Action::Create, false)];
        decide(
            Operation::Up,
            "e",
            &plan,
            &Approval::default(),
            &person(true, Some("yes\n")),
        )
        .unwrap();
        assert!(matches!(
            decide(
                Operation::Up,
                "e",
                &plan,
                &Approval::default(),
                &person(true, Some("y"))
            ),
            Err(Refusal::Declined { .. })
        ));
        assert!(matches!(
            decide(
                Operation::Up,
                "e",
                &plan,
                &Approval::default(),
                &person(true, None)
            ),
            Err(Refusal::Declined { .. })
        ));
        // destroy: the name, and destroying counts as consent for the data.
        let gone = [change("volume.data[0]", Action::Delete, true)];
        let p = person(true, Some("prod"));
        decide(Operation::Destroy, "prod", &gone, &Approval::default(), &p).unwrap();
        assert!(p.asked.borrow()[0].contains("Type the environment's name"));
        assert!(matches!(
            decide(
                Operation::Destroy,
                "prod",
                &gone,
                &Approval::default(),
                &person(true, Some("yes"))
            ),
            Err(Refusal::Declined { .. })
        ));
        // up with consented data loss: the name too.
        let consent = Approval {
            allow_data_loss: DataLossConsent::All,
            ..Default::default()
        };
        assert!(matches!(
            decide(
                Operation::Up,
                "prod",
                &gone,
                &consent,
                &person(true, Some("yes"))
            ),
            Err(Refusal::Declined { .. })
        ));
        decide(
            Operation::Up,
            "prod",
            &gone,
            &consent,
            &person(true, Some("prod")),
        )
        .unwrap();
    }
}

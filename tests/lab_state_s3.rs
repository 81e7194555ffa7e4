//! The S3 state backend against real S3 servers from the lab (moto, and
//! s3s-fs as the strict second): lock contention, lease renewal, expiry and
//! takeover, lost leases, sealed state round trips.
//! Run with the lab: `bash tests/run.sh` (or `tests/lab/up.sh s3 s3s`).

mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use provisioner::state::s3::S3Backend;
use provisioner::state::{Backend, LockInfo, StateError, StateFile};

async fn backend(
    loc: &provisioner::env::model::S3Location,
    env: &str,
    lease: Duration,
) -> (S3Backend, aws_sdk_s3::Client, String) {
    let bucket = "provisioner-state-tests".to_owned();
    let c = common::client_with_bucket(loc, &bucket).await;
    (
        S3Backend::new(c.clone(), bucket.clone(), "state/".into(), env, lease),
        c,
        bucket,
    )
}

/// Eight concurrent acquires, repeated: how many rounds had more than one winner.
async fn contention_rounds(
    loc: &provisioner::env::model::S3Location,
    server: &str,
    rounds: usize,
) -> usize {
    let mut doubled = 0;
    for _ in 0..rounds {
        let env = common::unique("contend");
        let (b, _, _) = backend(loc, &env, Duration::from_secs(60)).await;
        let b = std::sync::Arc::new(b);
        let tries: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.acquire("up").await })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tries {
            match t.await.unwrap() {
                Ok(l) => winners.push(l),
                Err(StateError::Locked { .. }) => {}
                Err(e) => panic!("{server}: unexpected error {e}"),
            }
        }
        assert!(!winners.is_empty(), "{server}: nobody won");
        doubled += usize::from(winners.len() > 1);
        let current = b.lock_info().await.unwrap().unwrap();
        let msg = b.acquire("plan").await.err().unwrap().to_string();
        assert!(
            msg.contains("locked by") && msg.contains(&current.id) && msg.contains("state unlock"),
            "{server}: {msg}"
        );
        for w in winners {
            w.release().await.unwrap();
        }
        assert!(
            b.lock_info().await.unwrap().is_none(),
            "{server}: released lock is gone"
        );
    }
    doubled
}

#[tokio::test]
#[ignore = "lab: needs tests/lab/up.sh s3"]
async fn contention_has_exactly_one_winner() {
    let (server, loc) = common::s3_servers_moto();
    assert_eq!(
        contention_rounds(&loc, server, 20).await,
        0,
        "{server}: conditional create must be atomic"
    );
}

/// s3s-fs checks `If-None-Match` and then writes, so concurrent creates can
/// both pass (a known limit of that server, see README). The read-back in
/// `acquire` must still leave exactly one holder in the common case; this
/// records how often the server lets two through.
#[tokio::test]
#[ignore = "lab: needs tests/lab/up.sh s3s"]
async fn contention_on_a_non_atomic_server_is_bounded() {
    let (server, loc) = common::s3_servers()
        .into_iter()
        .find(|(n, _)| *n == "s3s-fs")
        .unwrap();
    let rounds = 20;
    let doubled = contention_rounds(&loc, server, rounds).await;
    eprintln!("{server}: {doubled} of {rounds} rounds had two winners after read-back");
    // Without the read-back 3 of 20 rounds had two winners here; with it, 0 of 20.
    assert!(
        doubled <= 1,
        "{server}: {doubled}/{rounds} rounds with two winners"
    );
}

#[tokio::test]
#[ignore = "lab: needs tests/lab/up.sh s3 s3s"]
async fn lease_is_renewed_while_held_and_taken_over_after_expiry() {
    for (server, loc) in common::s3_servers() {
        let env = common::unique("lease");
        let lease = Duration::from_millis(1500);
        let (b, _, _) = backend(&loc, &env, lease).await;
        let holder = b.acquire("up").await.unwrap();
        // Held past several lease lengths: renewal keeps others out.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(800)).await;
            assert!(
                matches!(b.acquire("up").await, Err(StateError::Locked { .. })),
                "{server}: renewed lease must hold"
            );
            holder.check().unwrap();
        }
        // The holder "crashes": no release, no more renewals.
        let dead_id = holder.info().id.clone();
        drop(holder);
        assert!(
            matches!(b.acquire("up").await, Err(StateError::Locked { .. })),
            "{server}: not expired yet"
        );
        tokio::time::sleep(lease + Duration::from_millis(500)).await;
        let taker = b
            .acquire("up")
            .await
            .unwrap_or_else(|e| panic!("{server}: expired lease must be taken over: {e}"));
        assert_ne!(taker.info().id, dead_id);
        assert_eq!(b.lock_info().await.unwrap().unwrap().id, taker.info().id);
        taker.release().await.unwrap();
    }
}

#[tokio::test]
#[ignore = "lab: needs tests/lab/up.sh s3 s3s"]
async fn a_holder_that_lost_its_lease_stops_writing() {
    for (server, loc) in common::s3_servers() {
        let env = common::unique("lost");
        let (b, client, bucket) = backend(&loc, &env, Duration::from_millis(1500)).await;
        let holder = b.acquire("up").await.unwrap();
        // Another run takes the lease over (as after an expiry): the lock object changes.
        let other = LockInfo::new("up", Some(Duration::from_secs(60)));
        client
            .put_object()
            .bucket(&bucket)
            .key(format!("state/{env}.lock"))
            .body(ByteStream::from(serde_json::to_vec(&other).unwrap()))
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let err = holder
            .check()
            .err()
            .unwrap_or_else(|| panic!("{server}: lost lease not noticed"));
        assert!(
            matches!(err, StateError::LockLost { .. }),
            "{server}: {err}"
        );
        let write = b.write(b"{}", holder.as_ref()).await;
        assert!(
            matches!(write, Err(StateError::LockLost { .. })),
            "{server}: write after losing the lease must fail"
        );
        // release must not delete the other run's lock
        holder.release().await.unwrap();
        assert_eq!(
            b.lock_info().await.unwrap().unwrap().id,
            other.id,
            "{server}"
        );
        b.force_unlock(&other.id).await.unwrap();
    }
}

#[tokio::test]
#[ignore = "lab: needs tests/lab/up.sh s3 s3s"]
async fn state_round_trip_is_sealed_and_listed() {
    use provisioner::env::secret::Secret;
    use provisioner::state::crypto::Key;
    for (server, loc) in common::s3_servers() {
        let env = common::unique("rt");
        let (b, client, bucket) = backend(&loc, &env, Duration::from_secs(30)).await;
        let key = Key::from_base64(&Key::generate_base64(), "test".into()).unwrap();
        let mut st = StateFile::new(&env);
        let addr = provisioner::core::Address::new("secret", "db");
        let mut rec: provisioner::state::Record = serde_json::from_value(serde_json::json!({
            "kind": "secret", "id": "secret.db", "status": "ready", "attrs": {"length": 8}, "updated_at": "t"
        })).unwrap();
        rec.secrets
            .insert("value".into(), Secret::new("plaintext-canary-91".into()));
        st.resources.insert(addr.clone(), rec);
        let lock = b.acquire("up").await.unwrap();
        b.write(&st.to_json(Some(&key)).unwrap(), lock.as_ref())
            .await
            .unwrap();
        lock.release().await.unwrap();

        let raw = client
            .get_object()
            .bucket(&bucket)
            .key(format!("state/{env}.state.json"))
            .send()
            .await
            .unwrap();
        let raw = raw.body.collect().await.unwrap().into_bytes();
        assert!(
            !String::from_utf8_lossy(&raw).contains("plaintext-canary-91"),
            "{server}: plaintext in S3"
        );
        let mut back = StateFile::from_json(&b.read().await.unwrap().unwrap(), "t").unwrap();
        back.unseal(&key).unwrap();
        assert_eq!(
            back.resources[&addr].secrets["value"].expose(),
            "plaintext-canary-91"
        );
        assert!(
            b.list().await.unwrap().contains(&env),
            "{server}: list shows the environment"
        );

        // unlock needs the right id
        let l = b.acquire("up").await.unwrap();
        assert!(matches!(
            b.force_unlock("0000").await,
            Err(StateError::LockMismatch { .. })
        ));
        b.force_unlock(&l.info().id).await.unwrap();
    }
}

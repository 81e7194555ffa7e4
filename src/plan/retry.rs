//! The one retry policy (design principle 5): Retry-After is honoured,
//! transient failures back off exponentially with jitter, "in use" conflicts
//! retry until the delete deadline, everything else fails at once.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::provider::{Class, ProviderError};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Run `op` until it succeeds, fails fatally, or `deadline` passes.
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        deadline: Duration,
        mut op: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let start = tokio::time::Instant::now();
        let mut delay = self.first_delay;
        let mut attempt = 1u32;
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let wait = match err.class {
                Class::Fatal | Class::Quota | Class::Conflict => return Err(err),
                Class::Transient { after: Some(a) } => a,
                Class::Transient { after: None } | Class::InUse => jitter(delay),
            };
            if start.elapsed() + wait > deadline {
                // The class stays: a give-up on a transient failure is still "retry later".
                let message = format!(
                    "{} (gave up after {attempt} attempts in {:.0?}; raise `timeouts` in the environment file if the cloud is slow)",
                    err.message,
                    start.elapsed()
                );
                return Err(ProviderError { message, ..err });
            }
            tracing::warn!(what, attempt, wait_ms = wait.as_millis() as u64, error = %err.message, "retrying");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(self.max_delay);
            attempt += 1;
        }
    }
}

/// ±25 % so parallel retries do not stampede.
fn jitter(d: Duration) -> Duration {
    let f = rand::rng().random_range(0.75..1.25);
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    #[tokio::test]
    async fn transient_then_success() {
        let n = AtomicU32::new(0);
        let r = fast()
            .run("t", Duration::from_secs(5), || async {
                if n.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(ProviderError::transient("503"))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn fatal_is_not_retried() {
        let n = AtomicU32::new(0);
        let r: Result<(), _> = fast()
            .run("t", Duration::from_secs(5), || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::quota("quota exceeded"))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn in_use_gives_up_at_deadline() {
        let r: Result<(), _> = fast()
            .run("t", Duration::from_millis(30), || async {
                Err(ProviderError::new(Class::InUse, "409 in use"))
            })
            .await;
        let e = r.unwrap_err();
        assert!(e.message.contains("gave up after"), "{}", e.message);
        assert_eq!(e.class, Class::InUse, "giving up keeps the class");
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let n = AtomicU32::new(0);
        let t = tokio::time::Instant::now();
        fast()
            .run("t", Duration::from_secs(5), || async {
                if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(ProviderError::new(
                        Class::Transient {
                            after: Some(Duration::from_millis(120)),
                        },
                        "429",
                    ))
                } else {
                    Ok(())
                }
            })
            .await
            .unwrap();
        assert!(t.elapsed() >= Duration::from_millis(120));
    }
}

//! Waiting for something to become true, the one way every layer waits: ask
//! `probe` again and again, sooner at first (200 ms, growing by half up to
//! `max_delay`), until it answers Some, fails, or `timeout` passes (None).

use std::future::Future;
use std::time::Duration;

pub async fn until<T, E, F, Fut>(
    timeout: Duration,
    max_delay: Duration,
    mut probe: F,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200).min(max_delay);
    loop {
        if let Some(v) = probe().await? {
            return Ok(Some(v));
        }
        if start.elapsed() > timeout {
            return Ok(None);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(max_delay);
    }
}

//! The delivery worker: turns outbox rows into deliveries (`fan_out`), leases the due ones
//! (`claim_deliveries`), builds each event from the batch as `GET` returns it, signs and sends
//! it ([`crate::send`]), and records the attempt with the next one from [`crate::schedule`]
//! (`settle_delivery`). Each store step is its own short transaction; no transaction is open
//! while a receiver is called. It is woken when batches end and otherwise polls.

use std::sync::Arc;
use std::time::Duration;

use batchd_domain::openai::{Surface, unix};
use batchd_domain::{BatchId, Timestamp};
use batchd_store::webhooks::{ClaimedDelivery, SettleOutcome, Settlement};
use batchd_store::{BatchStore, ClockStore, WebhookStore};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::event;
use crate::policy::{Policy, Url};
use crate::schedule;
use crate::secret::Secret;
use crate::send::{self, Attempt, Delivery};

/// Outbox rows fanned out per transaction.
const FAN_OUT_STEP: usize = 64;
/// Deliveries leased and sent at once by one worker.
const CLAIM_STEP: usize = 16;
/// How long a lease lasts, in send timeouts: longer than an attempt can take (a connect and an
/// answer timeout, the resolution and the settle), so a live worker never loses one mid-send;
/// a dead worker's deliveries are retaken after it ([`Config::lease`]).
const LEASE_IN_TIMEOUTS: u32 = 3;
/// The last error of a delivery whose batch is gone.
const BATCH_GONE: &str = "batch deleted";

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub policy: Policy,
    /// Base of the batch's `results_url`, without a trailing slash.
    pub results_base: String,
    /// How often it looks for work without being woken.
    pub poll_interval: Duration,
    /// The nominal delay before the first retry ([`schedule::FIRST_RETRY`]); tests shorten it.
    pub first_retry: Duration,
    /// Connect and answer timeout of one attempt ([`crate::policy::SEND_TIMEOUT`]); tests
    /// shorten it.
    pub send_timeout: Duration,
    /// This worker's name in leases; unique per process.
    pub owner: String,
}

impl Config {
    /// How long a claimed delivery stays this worker's.
    fn lease(&self) -> Duration {
        self.send_timeout * LEASE_IN_TIMEOUTS
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            results_base: "http://localhost".into(),
            poll_interval: Duration::from_secs(1),
            first_retry: schedule::FIRST_RETRY,
            send_timeout: crate::policy::SEND_TIMEOUT,
            owner: event::event_id().replacen(event::EVENT_PREFIX, "worker_", 1),
        }
    }
}

/// What the worker reads and writes.
#[derive(Clone)]
pub struct Stores {
    pub webhooks: Arc<dyn WebhookStore>,
    pub batches: Arc<dyn BatchStore>,
    /// The workspaces' clocks: a rotation's overlap ends on the clock it was set by.
    pub clocks: Arc<dyn ClockStore>,
}

/// Runs until `stop` is cancelled; `wake` is notified when batches end.
pub async fn run(stores: Stores, config: Config, wake: Arc<Notify>, stop: CancellationToken) {
    let config = Arc::new(config);
    loop {
        let (busy, next_retry) = match pass(&stores, &config).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "webhook delivery pass failed");
                (false, None)
            }
        };
        if busy {
            continue;
        }
        let nap = next_retry.map_or(config.poll_interval, |d| d.min(config.poll_interval));
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(nap) => {}
        }
    }
}

/// One round: fan-out, then one claim's deliveries sent in parallel. Says whether there may be
/// more to do at once, and how soon a retry it scheduled is due.
async fn pass(
    stores: &Stores,
    config: &Arc<Config>,
) -> Result<(bool, Option<Duration>), batchd_store::StoreError> {
    while stores
        .webhooks
        .fan_out(event::event_type, FAN_OUT_STEP, Timestamp::now())
        .await?
        == FAN_OUT_STEP
    {}
    let now = Timestamp::now();
    let claimed = stores
        .webhooks
        .claim_deliveries(&config.owner, CLAIM_STEP, now, now.plus(config.lease()))
        .await?;
    let full = claimed.len() == CLAIM_STEP;
    let mut sends = JoinSet::new();
    for delivery in claimed {
        let (stores, config) = (stores.clone(), config.clone());
        sends.spawn(async move { deliver(&stores, &config, delivery).await });
    }
    let mut next: Option<Duration> = None;
    while let Some(done) = sends.join_next().await {
        match done {
            Ok(Ok(Some(retry_in))) => next = Some(next.map_or(retry_in, |n| n.min(retry_in))),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "webhook delivery not settled"),
            Err(e) => tracing::warn!(error = %e, "webhook delivery task failed"),
        }
    }
    Ok((full, next))
}

/// One attempt at one delivery, settled; returns how soon it is due again after a failure.
async fn deliver(
    stores: &Stores,
    config: &Config,
    delivery: ClaimedDelivery,
) -> Result<Option<Duration>, batchd_store::StoreError> {
    let attempt = attempt(stores, config, &delivery).await?;
    let now = Timestamp::now();
    let (status, error, delivered) = match attempt {
        Attempt::Delivered { status } => (Some(status), None, true),
        Attempt::Rejected { status } => (Some(status), None, false),
        Attempt::Failed { error } => (None, Some(error), false),
        Attempt::Refused(refusal) => (None, Some(refusal.to_string()), false),
    };
    let failures = delivery.attempts + 1;
    let nothing_to_send = error.as_deref() == Some(BATCH_GONE);
    let outcome = if delivered {
        SettleOutcome::Delivered
    } else if nothing_to_send {
        SettleOutcome::GiveUp
    } else {
        let elapsed = delivery.created_at.until(now);
        match schedule::next_attempt_from(config.first_retry, failures, elapsed, &mut rand::rng()) {
            Some(at) => SettleOutcome::RetryAt(delivery.created_at.plus(at)),
            None => SettleOutcome::GiveUp,
        }
    };
    tracing::debug!(
        event = %delivery.event_id,
        endpoint = %delivery.endpoint.id,
        ?status,
        ?error,
        ?outcome,
        "webhook attempt"
    );
    let result = match outcome {
        SettleOutcome::Delivered => "delivered",
        SettleOutcome::RetryAt(_) => "retry",
        SettleOutcome::GiveUp => "failed",
    };
    metrics::counter!("batchd_webhook_deliveries_total", "outcome" => result).increment(1);
    let retry_in = match outcome {
        SettleOutcome::RetryAt(at) => Some(now.until(at)),
        _ => None,
    };
    stores
        .webhooks
        .settle_delivery(
            delivery.key,
            &config.owner,
            Settlement {
                status,
                error,
                outcome,
                about_endpoint: !nothing_to_send,
            },
            now,
            now.minus(schedule::DISABLE_AFTER),
        )
        .await?;
    Ok(retry_in)
}

/// Builds, signs and sends the event.
async fn attempt(
    stores: &Stores,
    config: &Config,
    delivery: &ClaimedDelivery,
) -> Result<Attempt, batchd_store::StoreError> {
    let gone = || Attempt::Failed {
        error: BATCH_GONE.to_owned(),
    };
    let Some(id) = delivery
        .batch_id
        .as_deref()
        .and_then(|id| BatchId::parse(id).or_else(|| BatchId::parse_openai(id)))
    else {
        return Ok(gone());
    };
    let Some(batch) = stores
        .batches
        .get_batch(&delivery.endpoint.workspace, &id)
        .await?
    else {
        return Ok(gone());
    };
    let body = match (batch.endpoint.surface(), event::event_type(&batch)) {
        (Surface::OpenAi, Some(kind)) => event::openai_batch_event(
            &delivery.event_id,
            kind,
            unix(delivery.event_at),
            batch.id.as_str(),
        ),
        _ => event::batch_ended(
            &delivery.event_id,
            &delivery.event_at.to_rfc3339(),
            &batch.to_wire(&config.results_base),
        ),
    };
    let failed = |error: String| Ok(Attempt::Failed { error });
    let Ok(url) = Url::parse(&delivery.endpoint.url) else {
        return failed("the endpoint's URL does not parse".into());
    };
    let Ok(current) = Secret::parse(&delivery.endpoint.secret) else {
        return failed("the endpoint's secret does not parse".into());
    };
    let now = Timestamp::now();
    // `previous_until` was set on the workspace's clock (test mode's may run ahead), so it is
    // read on that clock; only a rotated endpoint asks.
    let previous = match (
        &delivery.endpoint.previous_secret,
        delivery.endpoint.previous_until,
    ) {
        (Some(previous), Some(until)) => {
            let offset = stores
                .clocks
                .clock_offset(&delivery.endpoint.workspace)
                .await?;
            let workspace_now = Timestamp::from_micros(now.as_micros().saturating_add(offset));
            (until > workspace_now)
                .then(|| Secret::parse(previous).ok())
                .flatten()
        }
        _ => None,
    };
    let mut secrets = vec![&current];
    secrets.extend(previous.as_ref());
    Ok(send::send(
        Delivery {
            url: &url,
            id: &delivery.event_id,
            body: &body,
            secrets: &secrets,
        },
        config.policy,
        config.send_timeout,
        now.as_micros() / 1_000_000,
    )
    .await)
}

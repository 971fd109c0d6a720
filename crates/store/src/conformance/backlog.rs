//! The contract's case for the webhook backlog `/metrics` shows: the oldest outbox row's event
//! time, and when the earliest pending delivery is due, across workspaces.

use super::outbox::ended_batch;
use super::*;

/// An empty store has no backlog; ended batches leave their event times in the outbox until
/// fan-out, the oldest first; then the earliest due pending delivery is reported, moving with
/// retries, and nothing once every delivery is settled for good.
pub async fn webhook_backlog_reports_the_oldest_event_and_the_next_due_delivery<H: Harness>(h: &H) {
    use crate::WebhookStore;
    use crate::webhooks::{Backlog, SettleOutcome, Settlement};
    const EVENT: &str = "message_batch.ended";
    fn messages_only(b: &Batch) -> Option<&'static str> {
        (b.endpoint == batchd_domain::openai::Endpoint::Messages).then_some(EVENT)
    }
    let store = h.open().await;
    assert_eq!(store.backlog().await.unwrap(), Backlog::default());

    for (workspace, id) in [(WS, "whep_a"), ("other", "whep_o")] {
        store
            .create_endpoint(crate::webhooks::NewEndpoint {
                id: id.to_owned(),
                workspace: workspace.to_owned(),
                url: format!("https://example.com/{id}"),
                events: vec![EVENT.into()],
                description: None,
                secret: format!("whsec_{id}"),
                created_at: at(1),
            })
            .await
            .unwrap();
    }
    ended_batch(&store, "other", 10).await;
    ended_batch(&store, WS, 20).await;
    let backlog = store.backlog().await.unwrap();
    assert_eq!(
        (backlog.outbox_oldest, backlog.next_due),
        (Some(at(10)), None)
    );
    assert_eq!(
        backlog.outbox_age(at(10 + 3_000_000)),
        Duration::from_secs(3)
    );

    assert_eq!(store.fan_out(messages_only, 1, at(30)).await.unwrap(), 1);
    assert_eq!(
        store.backlog().await.unwrap(),
        Backlog {
            outbox_oldest: Some(at(20)),
            next_due: Some(at(30)),
        },
        "one fanned out, one waiting"
    );
    assert_eq!(store.fan_out(messages_only, 10, at(40)).await.unwrap(), 1);
    assert_eq!(
        store.backlog().await.unwrap(),
        Backlog {
            outbox_oldest: None,
            next_due: Some(at(30)),
        }
    );

    // The first delivery fails and is retried later; the second is delivered.
    let claimed = store
        .claim_deliveries("w1", 10, at(50), at(1_000))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(
        store.backlog().await.unwrap().next_due,
        Some(at(30)),
        "being sent is still due"
    );
    let settle = |outcome| Settlement {
        status: Some(500),
        error: None,
        outcome,
        about_endpoint: true,
    };
    let (first, second) = (&claimed[0], &claimed[1]);
    store
        .settle_delivery(
            first.key,
            "w1",
            settle(SettleOutcome::RetryAt(at(500))),
            at(60),
            at(0),
        )
        .await
        .unwrap();
    store
        .settle_delivery(
            second.key,
            "w1",
            settle(SettleOutcome::Delivered),
            at(60),
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(store.backlog().await.unwrap().next_due, Some(at(500)));
    assert_eq!(
        store.backlog().await.unwrap().delivery_lag(at(400)),
        Duration::ZERO,
        "not due yet"
    );

    // Given up on: nothing is pending any more.
    let again = store
        .claim_deliveries("w1", 10, at(500), at(1_000))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    store
        .settle_delivery(
            again[0].key,
            "w1",
            settle(SettleOutcome::GiveUp),
            at(510),
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(store.backlog().await.unwrap(), Backlog::default());
}

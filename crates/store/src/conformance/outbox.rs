//! The contract's webhook cases: every way a batch's end becomes visible writes exactly one
//! outbox row, in the transaction that makes it visible (for an OpenAI batch, the one that
//! records its files), and nothing else does; endpoints are stored per workspace; fan-out
//! gives each endpoint only the event types it subscribed to.

use super::*;

const OUTBOX: &str = "webhook_outbox";

/// Its last answer, a drained cancel (by maintenance and by the release of its last claim) and
/// expiry each leave one row per ended batch; creating, canceling, answering part of a batch and
/// ending it again leave none; the rows survive a restart.
pub async fn every_end_writes_one_outbox_row<H: Harness>(h: &H) {
    let store = h.open().await;
    // The last answer.
    let completed = create(&store, 2).await;
    let items = claim(&store, 10, at(1)).await;
    store
        .record(&answers(&items[..1], Outcome::Succeeded), at(2))
        .await
        .unwrap();
    assert_eq!(h.rows(&store, OUTBOX).await, 0, "not ended yet");
    let ended = store
        .record(&answers(&items[1..], Outcome::Errored), at(3))
        .await
        .unwrap();
    assert_eq!(ended.batches.len(), 1);
    assert_eq!(h.rows(&store, OUTBOX).await, 1);

    // A cancel drained by maintenance.
    let canceled = create(&store, 3).await;
    store.cancel_batch(WS, &canceled.id, at(4)).await.unwrap();
    assert_eq!(h.rows(&store, OUTBOX).await, 1, "canceling is not ended");
    store.finish_due(at(5)).await.unwrap();
    assert_eq!(get(&store, &canceled).await.status, ProcessingStatus::Ended);
    assert_eq!(h.rows(&store, OUTBOX).await, 2);

    // A cancel drained by the release of its last claim.
    let released = create(&store, 2).await;
    let items = claim(&store, 10, at(6)).await;
    store.cancel_batch(WS, &released.id, at(7)).await.unwrap();
    let slots: Vec<Slot> = items.iter().map(WorkItem::slot).collect();
    store.release(&slots).await.unwrap();
    store.finish_due(at(8)).await.unwrap();
    assert_eq!(get(&store, &released).await.status, ProcessingStatus::Ended);
    assert_eq!(h.rows(&store, OUTBOX).await, 3);

    // Expiry.
    let expiring = create(&store, 2).await;
    store.finish_due(at(DAY + 1)).await.unwrap();
    assert_eq!(get(&store, &expiring).await.status, ProcessingStatus::Ended);
    assert_eq!(h.rows(&store, OUTBOX).await, 4);

    // Nothing ends twice, and nothing else writes.
    store.finish_due(at(2 * DAY)).await.unwrap();
    for b in [&completed, &canceled] {
        store.cancel_batch(WS, &b.id, at(2 * DAY)).await.unwrap();
    }
    store.delete_batch(WS, &completed.id).await.unwrap();
    assert_eq!(h.rows(&store, OUTBOX).await, 4);

    h.close(store).await;
    let store = h.open().await;
    assert_eq!(h.rows(&store, OUTBOX).await, 4, "durable");
}

fn new_endpoint(workspace: &str, id: &str) -> crate::webhooks::NewEndpoint {
    crate::webhooks::NewEndpoint {
        id: id.to_owned(),
        workspace: workspace.to_owned(),
        url: format!("https://example.com/{id}"),
        events: vec!["message_batch.ended".into()],
        description: Some("d".into()),
        secret: format!("whsec_{id}"),
        created_at: at(1),
    }
}

/// Endpoints are per workspace, read back as created, rotate keeping the previous secret until
/// a time, and disappear when deleted (for good: the id stays taken); all durable.
pub async fn webhook_endpoints_are_stored_per_workspace<H: Harness>(h: &H) {
    use crate::WebhookStore;
    let store = h.open().await;
    let a = store
        .create_endpoint(new_endpoint(WS, "whep_a"))
        .await
        .unwrap();
    assert_eq!(
        (
            a.url.as_str(),
            a.events.clone(),
            a.description.as_deref(),
            a.secret.as_str()
        ),
        (
            "https://example.com/whep_a",
            vec!["message_batch.ended".to_owned()],
            Some("d"),
            "whsec_whep_a"
        )
    );
    assert_eq!(
        (a.previous_secret.clone(), a.disabled_at, a.created_at),
        (None, None, at(1))
    );
    let b = store
        .create_endpoint(new_endpoint(WS, "whep_b"))
        .await
        .unwrap();
    store
        .create_endpoint(new_endpoint("other", "whep_c"))
        .await
        .unwrap();
    assert!(
        store
            .create_endpoint(new_endpoint("other", "whep_a"))
            .await
            .is_err(),
        "ids are unique"
    );

    let listed: Vec<String> = store
        .list_endpoints(WS)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, vec!["whep_a", "whep_b"]);
    assert_eq!(
        store.get_endpoint(WS, "whep_a").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(store.get_endpoint("other", "whep_a").await.unwrap(), None);

    let rotated = store
        .rotate_secret(WS, "whep_a", "whsec_new", at(DAY))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret, "whsec_new");
    assert_eq!(rotated.previous_secret.as_deref(), Some("whsec_whep_a"));
    assert_eq!(rotated.previous_until, Some(at(DAY)));
    assert!(
        store
            .rotate_secret("other", "whep_a", "whsec_x", at(DAY))
            .await
            .unwrap()
            .is_none()
    );

    assert!(!store.delete_endpoint("other", "whep_b").await.unwrap());
    assert!(store.delete_endpoint(WS, "whep_b").await.unwrap());
    assert!(!store.delete_endpoint(WS, "whep_b").await.unwrap());
    assert_eq!(store.get_endpoint(WS, &b.id).await.unwrap(), None);

    h.close(store).await;
    let store = h.open().await;
    let listed = store.list_endpoints(WS).await.unwrap();
    assert_eq!(listed, vec![rotated]);
    assert!(
        store
            .create_endpoint(new_endpoint(WS, "whep_b"))
            .await
            .is_err(),
        "never reused"
    );
}

/// Ends a fresh batch of one request in `workspace` at `when`, leaving its outbox row.
pub(super) async fn ended_batch(store: &impl Store, workspace: &str, when: i64) -> Batch {
    let b = create_in(store, workspace, at(when), 1).await;
    let items = claim(store, 10, at(when)).await;
    let mine: Vec<WorkItem> = items.into_iter().filter(|i| i.batch_id == b.id).collect();
    store
        .record(&answers(&mine, Outcome::Succeeded), at(when))
        .await
        .unwrap();
    b
}

/// Fan-out makes one delivery per enabled, subscribed endpoint of the batch's workspace that
/// existed at the event, and consumes the outbox row; a deleted batch gets none. A claimed
/// delivery is leased: not handed out again until settled or its lease runs out. Settling
/// records the attempt and keeps the event id; failures for long enough disable the endpoint,
/// whose pending deliveries are then failed rather than sent.
pub async fn deliveries_fan_out_claim_and_settle<H: Harness>(h: &H) {
    use crate::WebhookStore;
    use crate::webhooks::{DeliveryState, SettleOutcome, Settlement};
    const EVENT: &str = "message_batch.ended";
    fn messages_only(b: &Batch) -> Option<&'static str> {
        (b.endpoint == batchd_domain::openai::Endpoint::Messages).then_some(EVENT)
    }
    let store = h.open().await;
    let a = store
        .create_endpoint(new_endpoint(WS, "whep_a"))
        .await
        .unwrap();
    let mut unsubscribed = new_endpoint(WS, "whep_u");
    unsubscribed.events = vec!["batch.completed".into()];
    store.create_endpoint(unsubscribed).await.unwrap();
    store
        .create_endpoint(new_endpoint("other", "whep_o"))
        .await
        .unwrap();
    let mut later = new_endpoint(WS, "whep_later");
    later.created_at = at(DAY * 3);
    store.create_endpoint(later).await.unwrap();

    let batch = ended_batch(&store, WS, 10).await;
    let deleted = ended_batch(&store, WS, 20).await;
    store.delete_batch(WS, &deleted.id).await.unwrap();
    // A batch the caller gives no event type makes no delivery.
    store
        .insert_failed_batch(super::openai::failed_batch(WS, at(25)), at(25))
        .await
        .unwrap();
    assert_eq!(h.rows(&store, OUTBOX).await, 3);
    assert_eq!(store.fan_out(messages_only, 1, at(30)).await.unwrap(), 1);
    assert_eq!(store.fan_out(messages_only, 10, at(30)).await.unwrap(), 2);
    assert_eq!(store.fan_out(messages_only, 10, at(30)).await.unwrap(), 0);
    assert_eq!(h.rows(&store, OUTBOX).await, 0, "consumed");
    assert_eq!(h.rows(&store, "webhook_deliveries").await, 1, "{a:?}");

    let now = at(40);
    let claimed = store
        .claim_deliveries("w1", 10, now, at(40 + 1_000))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let d = &claimed[0];
    assert!(
        d.event_id.starts_with("evt_") && d.event_id.len() == 28,
        "{}",
        d.event_id
    );
    assert_eq!(d.batch_id.as_deref(), Some(batch.id.as_str()));
    assert_eq!((d.endpoint.id.as_str(), d.attempts), ("whep_a", 0));
    assert!(
        store
            .claim_deliveries("w2", 10, at(41), at(2_000))
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    // A settle by an owner that does not hold the lease does nothing.
    let failure = |at_: Timestamp| Settlement {
        status: Some(500),
        error: None,
        outcome: SettleOutcome::RetryAt(at_),
        about_endpoint: true,
    };
    store
        .settle_delivery(d.key, "w2", failure(at(50)), at(42), at(0))
        .await
        .unwrap();
    store
        .settle_delivery(d.key, "w1", failure(at(100)), at(42), at(0))
        .await
        .unwrap();
    let records = store.list_deliveries(WS, "whep_a", 10).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (
            records[0].state,
            records[0].attempts,
            records[0].last_status
        ),
        (DeliveryState::Pending, 1, Some(500))
    );
    assert_eq!(records[0].next_attempt_at, Some(at(100)));
    assert!(
        store
            .claim_deliveries("w1", 10, at(99), at(2_000))
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_deliveries("w2", 10, at(100), at(2_000))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].event_id.as_str(), again[0].attempts),
        (d.event_id.as_str(), 1)
    );
    store
        .settle_delivery(
            d.key,
            "w2",
            Settlement {
                status: Some(204),
                error: None,
                outcome: SettleOutcome::Delivered,
                about_endpoint: true,
            },
            at(101),
            at(0),
        )
        .await
        .unwrap();
    let records = store.list_deliveries(WS, "whep_a", 10).await.unwrap();
    assert_eq!(
        (
            records[0].state,
            records[0].attempts,
            records[0].next_attempt_at
        ),
        (DeliveryState::Delivered, 2, None)
    );
    assert!(
        store
            .list_deliveries("other", "whep_a", 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A lease that ran out is handed out again; failing long enough disables the endpoint.
    ended_batch(&store, WS, 200).await;
    store.fan_out(messages_only, 10, at(200)).await.unwrap();
    let first = store
        .claim_deliveries("w1", 10, at(201), at(300))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let retaken = store
        .claim_deliveries("w2", 10, at(300), at(400))
        .await
        .unwrap();
    assert_eq!(retaken.len(), 1, "the lease ran out");
    store
        .settle_delivery(
            retaken[0].key,
            "w2",
            Settlement {
                about_endpoint: false,
                ..failure(at(500))
            },
            at(301),
            at(400),
        )
        .await
        .unwrap();
    // Had that attempt started the endpoint's run of failures (at 301), this would disable it.
    assert_eq!(
        store
            .get_endpoint(WS, "whep_a")
            .await
            .unwrap()
            .unwrap()
            .disabled_at,
        None
    );
    let last = store
        .claim_deliveries("w1", 10, at(500), at(600))
        .await
        .unwrap();
    store
        .settle_delivery(last[0].key, "w1", failure(at(700)), at(501), at(501))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_endpoint(WS, "whep_a")
            .await
            .unwrap()
            .unwrap()
            .disabled_at,
        Some(at(501)),
        "failing since 501, disabled for failures from 501 on"
    );
    assert!(
        store
            .claim_deliveries("w1", 10, at(700), at(800))
            .await
            .unwrap()
            .is_empty()
    );
    let records = store.list_deliveries(WS, "whep_a", 10).await.unwrap();
    assert_eq!(records[0].state, DeliveryState::Failed);
    assert_eq!(
        records[0].last_error.as_deref(),
        Some(crate::webhooks::ENDPOINT_GONE)
    );

    h.close(store).await;
    let store = h.open().await;
    assert_eq!(
        store.list_deliveries(WS, "whep_a", 10).await.unwrap().len(),
        2,
        "durable"
    );
}

/// An OpenAI batch's outbox row is written when it shows a terminal status, not when it ends:
/// when its files are recorded (once, however many finalize), or at once for one inserted
/// failed. Fan-out asks the caller each batch's event type and gives each endpoint only the
/// types it subscribed to.
pub async fn openai_ends_are_events_once_their_files_are_written<H: Harness>(h: &H) {
    use super::openai::{create_openai, failed_batch, meta};
    use crate::WebhookStore;
    fn kind(b: &Batch) -> Option<&'static str> {
        let meta = b.openai.as_ref()?;
        Some(if !meta.errors.is_empty() {
            "batch.failed"
        } else if b.end_reason == Some(EndReason::Canceled) {
            "batch.cancelled"
        } else {
            "batch.completed"
        })
    }
    let store = h.open().await;
    for (id, event) in [
        ("whep_done", "batch.completed"),
        ("whep_cancel", "batch.cancelled"),
        ("whep_failed", "batch.failed"),
    ] {
        let mut e = new_endpoint(WS, id);
        e.events = vec![event.into()];
        store.create_endpoint(e).await.unwrap();
    }
    let mut written = meta();
    written.output_file_id = Some(batchd_domain::openai::FileId::generate());

    let done = create_openai(&store, at(1), 1).await;
    let items = claim(&store, 10, at(2)).await;
    store
        .record(&answers(&items, Outcome::Succeeded), at(3))
        .await
        .unwrap();
    assert!(get(&store, &done).await.is_ended());
    assert_eq!(
        h.rows(&store, OUTBOX).await,
        0,
        "finalizing is not terminal"
    );
    assert!(
        store
            .finalize(done.key, &written, &[], at(4))
            .await
            .unwrap()
    );
    assert_eq!(h.rows(&store, OUTBOX).await, 1);
    assert!(
        !store
            .finalize(done.key, &written, &[], at(5))
            .await
            .unwrap()
    );

    let canceled = create_openai(&store, at(6), 1).await;
    store.cancel_batch(WS, &canceled.id, at(7)).await.unwrap();
    store.finish_due(at(8)).await.unwrap();
    assert!(get(&store, &canceled).await.is_ended());
    assert_eq!(
        h.rows(&store, OUTBOX).await,
        1,
        "cancelling until its files are written"
    );
    assert!(
        store
            .finalize(canceled.key, &written, &[], at(9))
            .await
            .unwrap()
    );
    assert_eq!(h.rows(&store, OUTBOX).await, 2);

    store
        .insert_failed_batch(failed_batch(WS, at(10)), at(10))
        .await
        .unwrap();
    assert_eq!(h.rows(&store, OUTBOX).await, 3);
    // Archiving later changes nothing.
    store.archive_due(at(DAY * 40), at(DAY * 40)).await.unwrap();
    assert_eq!(h.rows(&store, OUTBOX).await, 3);

    assert_eq!(store.fan_out(kind, 10, at(DAY * 40)).await.unwrap(), 3);
    assert_eq!(h.rows(&store, "webhook_deliveries").await, 3);
    for (endpoint, batch) in [("whep_done", Some(&done)), ("whep_cancel", Some(&canceled))] {
        let records = store.list_deliveries(WS, endpoint, 10).await.unwrap();
        assert_eq!(records.len(), 1, "{endpoint}");
        assert_eq!(
            records[0].batch_id.as_deref(),
            batch.map(|b| b.id.as_str()),
            "{endpoint}"
        );
    }
    let failed = store.list_deliveries(WS, "whep_failed", 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    let claimed = store
        .claim_deliveries("w", 10, at(DAY * 40), at(DAY * 41))
        .await
        .unwrap();
    let done_at = claimed
        .iter()
        .find(|d| d.batch_id.as_deref() == Some(done.id.as_str()))
        .map(|d| d.event_at);
    assert_eq!(
        done_at,
        Some(at(4)),
        "the event's time is when its files were recorded"
    );
}

//! The contract's webhook cases: every way a batch ends writes exactly one outbox row, in
//! the transaction that ends it, and nothing else does; endpoints are stored per workspace.

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

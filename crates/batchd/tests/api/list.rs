//! GET /v1/messages/batches: order, limits and paging in both directions.

use serde_json::Value;

use crate::helpers::*;

async fn page(app: &TestApp, query: &str) -> Value {
    let resp = app.get(&format!("/v1/messages/batches{query}")).await;
    assert_eq!(resp.status(), 200, "{query}");
    let text = resp.text().await.unwrap();
    assert_key_order(
        &text,
        &[
            "\"data\":",
            "\"has_more\":",
            "\"first_id\":",
            "\"last_id\":",
        ],
    );
    serde_json::from_str(&text).unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn lists_newest_first_and_pages_both_ways() {
    let app = spawn().await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(app.create_n(1).await["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let all = page(&app, "").await;
    assert_eq!(ids(&all), newest_first);
    assert_eq!(all["has_more"], false);
    assert_eq!(all["first_id"], newest_first[0].as_str());
    assert_eq!(all["last_id"], newest_first[6].as_str());

    // Forward (older) with after_id, as the SDKs paginate by default.
    let mut seen = Vec::new();
    let mut query = "?limit=3".to_owned();
    loop {
        let p = page(&app, &query).await;
        seen.extend(ids(&p));
        if p["has_more"] == false {
            break;
        }
        query = format!("?limit=3&after_id={}", p["last_id"].as_str().unwrap());
    }
    assert_eq!(seen, newest_first);

    // Backward (newer) with before_id from the oldest.
    let oldest = &newest_first[6];
    let p = page(&app, &format!("?limit=2&before_id={oldest}")).await;
    assert_eq!(ids(&p), newest_first[4..6].to_vec());
    assert_eq!(p["has_more"], true);
    let p = page(
        &app,
        &format!("?limit=10&before_id={}", p["first_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(ids(&p), newest_first[0..4].to_vec());
    assert_eq!(p["has_more"], false);

    // Nothing newer than the newest: an empty page with null ids.
    let p = page(&app, &format!("?before_id={}&beta=true", newest_first[0])).await;
    assert_eq!(ids(&p), Vec::<String>::new());
    assert!(p["first_id"].is_null() && p["last_id"].is_null());
    assert_eq!(p["has_more"], false);
}

#[tokio::test]
async fn both_cursors_page_through_the_batches_between_them() {
    let app = spawn().await;
    let mut created = Vec::new();
    for _ in 0..6 {
        created.push(app.create_n(1).await["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let (after, before) = (&newest_first[0], &newest_first[5]);

    let p = page(
        &app,
        &format!("?limit=2&after_id={after}&before_id={before}"),
    )
    .await;
    assert_eq!(ids(&p), newest_first[1..3].to_vec());
    assert_eq!(p["has_more"], true);
    assert_eq!(p["first_id"], newest_first[1].as_str());
    assert_eq!(p["last_id"], newest_first[2].as_str());
    let p = page(
        &app,
        &format!(
            "?limit=5&after_id={}&before_id={before}",
            p["last_id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(ids(&p), newest_first[3..5].to_vec());
    assert_eq!(p["has_more"], false);

    // A pair with nothing between them is an empty page, not an error.
    let p = page(&app, &format!("?after_id={before}&before_id={after}")).await;
    assert_eq!(ids(&p), Vec::<String>::new());
    assert_eq!(p["has_more"], false);

    let unknown = "msgbatch_011CZkZaBF1tNoB5wlCeusgy";
    let resp = app
        .get(&format!(
            "/v1/messages/batches?after_id={after}&before_id={unknown}"
        ))
        .await;
    assert_error(
        resp,
        404,
        "not_found_error",
        &format!("Message Batch {unknown} not found."),
    )
    .await;
}

#[tokio::test]
async fn default_limit_is_20_and_limits_are_checked() {
    let app = spawn().await;
    for _ in 0..21 {
        app.create_n(1).await;
    }
    let p = page(&app, "").await;
    assert_eq!(ids(&p).len(), 20);
    assert_eq!(p["has_more"], true);
    assert_eq!(ids(&page(&app, "?limit=1000").await).len(), 21);
    for (q, m) in [
        ("0", "limit: Input should be greater than or equal to 1"),
        ("1001", "limit: Input should be less than or equal to 1000"),
        (
            "abc",
            "limit: Input should be a valid integer, unable to parse string as an integer",
        ),
    ] {
        let resp = app.get(&format!("/v1/messages/batches?limit={q}")).await;
        assert_error(resp, 400, "invalid_request_error", m).await;
    }
}

#[tokio::test]
async fn workspaces_see_only_their_batches() {
    let app = spawn().await;
    let a = app.create_n(1).await["id"].as_str().unwrap().to_owned();
    let b_app = app.as_key(KEY_B);
    let b = b_app.create_n(1).await["id"].as_str().unwrap().to_owned();
    assert_eq!(ids(&page(&app, "").await), vec![a.clone()]);
    assert_eq!(ids(&page(&b_app, "").await), vec![b]);
    // Another workspace's id is no cursor here.
    let resp = b_app
        .get(&format!("/v1/messages/batches?after_id={a}"))
        .await;
    assert_error(
        resp,
        404,
        "not_found_error",
        &format!("Message Batch {a} not found."),
    )
    .await;
}

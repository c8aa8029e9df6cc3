//! watch: a stream of `{"type": …, "object": …}` lines from one store watch, with
//! initial events when no resourceVersion is given (or `sendInitialEvents=true`),
//! selector transitions (an object leaving the selection is DELETED, entering it is
//! ADDED), bookmarks, `timeoutSeconds`, and a 410 ERROR event for a compacted version.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use strata_store::{EventKind, Store, StoreError};
use tokio::sync::mpsc;

use super::query::Query;
use super::read::{list_page, selected};
use super::{Target, wants_table};
use crate::status::ApiError;
use crate::{storage, table};

/// How often an idle watch with `allowWatchBookmarks` gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);
/// Watches without `timeoutSeconds` end after this (clients re-watch).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct Emitter {
    tx: mpsc::Sender<Bytes>,
    target_kind: &'static strata_api::Resource,
    table: bool,
    first_table: bool,
}

impl Emitter {
    /// Sends one event; false when the client is gone.
    async fn send(&mut self, kind: &str, object: Value) -> bool {
        let object = if self.table && kind != "BOOKMARK" && kind != "ERROR" {
            let rv = object["metadata"]["resourceVersion"].clone();
            let mut t = table::table(self.target_kind, &[object], rv);
            if !self.first_table {
                t["columnDefinitions"] = json!([]);
            }
            self.first_table = false;
            t
        } else {
            object
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    async fn bookmark(&mut self, revision: i64, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({
            "kind": self.target_kind.kind,
            "apiVersion": self.target_kind.api_version(),
            "metadata": meta,
        });
        self.send("BOOKMARK", object).await
    }
}

pub(super) async fn watch(
    store: Arc<dyn Store>,
    target: Target,
    query: Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let rv = query.resource_version.clone();
    let initial = match (&rv, query.send_initial_events) {
        (_, Some(send)) => send,
        (None, None) => true,
        (Some(v), None) => v == "0",
    };
    // Initial state: a consistent list, then the watch from its revision.
    let (initial_items, from) = if initial {
        let mut listing = query.clone();
        listing.limit = None;
        listing.continue_token = None;
        listing.resource_version = None;
        let (items, revision, _, _) = list_page(store.as_ref(), &target, &listing).await?;
        (items, revision)
    } else {
        let from = rv
            .as_deref()
            .map(storage::parse_resource_version)
            .transpose()?
            .unwrap_or(0);
        (Vec::new(), from)
    };
    let prefix = storage::prefix(target.resource, target.namespace.as_deref());
    let watch = store.watch(&prefix, from).await;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut emitter = Emitter {
        tx,
        target_kind: target.resource,
        table: wants_table(headers),
        first_table: true,
    };
    let timeout = query
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    tokio::spawn(async move {
        let mut watch = match watch {
            Ok(w) => w,
            Err(err) => {
                let _ = emitter.send("ERROR", ApiError::from(err).status()).await;
                return;
            }
        };
        for object in initial_items {
            if !emitter.send("ADDED", object).await {
                return;
            }
        }
        if query.send_initial_events == Some(true)
            && query.bookmarks
            && !emitter.bookmark(from, true).await
        {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        let mut last = from;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                _ = ticker.tick(), if query.bookmarks => {
                    if !emitter.bookmark(last, false).await {
                        return;
                    }
                }
                event = watch.next() => {
                    let event = match event {
                        Some(Ok(event)) => event,
                        Some(Err(StoreError::WatchLagged { .. })) | None => return,
                        Some(Err(err)) => {
                            let _ = emitter.send("ERROR", ApiError::from(err).status()).await;
                            return;
                        }
                    };
                    last = event.revision;
                    let decoded = |kv: &strata_store::KeyValue| storage::decode(kv).ok();
                    let (kind, object) = match event.kind {
                        EventKind::Create => match decoded(&event.kv) {
                            Some(o) if selected(&o, &query) => ("ADDED", o),
                            _ => continue,
                        },
                        EventKind::Update => {
                            let new = decoded(&event.kv);
                            let old = event.prev_kv.as_ref().and_then(decoded);
                            let was = old.as_ref().is_some_and(|o| selected(o, &query));
                            match new {
                                Some(n) if selected(&n, &query) => (if was { "MODIFIED" } else { "ADDED" }, n),
                                Some(n) if was => ("DELETED", n),
                                _ => continue,
                            }
                        }
                        EventKind::Delete => match event.prev_kv.as_ref().and_then(decoded) {
                            Some(mut o) if selected(&o, &query) => {
                                storage::set_resource_version(&mut o, event.revision);
                                ("DELETED", o)
                            }
                            _ => continue,
                        },
                    };
                    if !emitter.send(kind, object).await {
                        return;
                    }
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

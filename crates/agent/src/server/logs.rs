//! `GET /containerLogs/{ns}/{pod}/{container}`: a container's log as plain text, with the
//! query parameters of `kubectl logs` — `follow`, `previous`, `tailLines`,
//! `sinceSeconds`, `sinceTime`, `timestamps`, `limitBytes`. Following streams what is
//! appended (across rotations) until the container stops or the client goes away.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

use super::pods::{self, Target};
use super::{Body, full, query_flag, query_values, status_response};
use crate::Context;
use crate::containers::logread::{self, LogOptions};

/// How often a followed log is polled for more.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The parsed query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Stream what is appended.
    pub follow: bool,
    /// The previous attempt's log.
    pub previous: bool,
    /// What to show.
    pub options: LogOptions,
}

/// Parses the query of a log request; `now` anchors `sinceSeconds`.
pub fn parse_query(query: Option<&str>, now: DateTime<Utc>) -> Result<LogQuery, String> {
    let number = |key: &str| -> Result<Option<i64>, String> {
        match query_values(query, key).first() {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("{key} must be an integer, not {v:?}")),
        }
    };
    let non_negative = |key: &str| -> Result<Option<u64>, String> {
        number(key)?
            .map(|n| u64::try_from(n).map_err(|_| format!("{key} must not be negative")))
            .transpose()
    };
    let mut since = match query_values(query, "sinceTime").first() {
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| format!("sinceTime must be an RFC 3339 time, not {text:?}"))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    if let Some(seconds) = non_negative("sinceSeconds")? {
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        since = Some(now - chrono::Duration::try_seconds(seconds).unwrap_or(chrono::Duration::MAX));
    }
    Ok(LogQuery {
        follow: query_flag(query, &["follow"]),
        previous: query_flag(query, &["previous"]),
        options: LogOptions {
            tail_lines: non_negative("tailLines")?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            since,
            timestamps: query_flag(query, &["timestamps"]),
            limit_bytes: non_negative("limitBytes")?,
        },
    })
}

/// Serves one log request.
pub async fn serve(ctx: Arc<Context>, req: Request<Incoming>, target: &Target) -> Response<Body> {
    let query = match parse_query(req.uri().query(), Utc::now()) {
        Ok(query) => query,
        Err(message) => return status_response(StatusCode::BAD_REQUEST, &message),
    };
    let attempts = match pods::find(&ctx, target).await {
        Ok(attempts) => attempts,
        Err((code, message)) => return status_response(code, &message),
    };
    let entry = if query.previous {
        match attempts.previous() {
            Some(entry) => entry.clone(),
            None => {
                let message = format!(
                    "previous terminated container {:?} in pod {:?} not found",
                    target.container, target.pod
                );
                return status_response(StatusCode::BAD_REQUEST, &message);
            }
        }
    } else {
        match attempts.current() {
            Some(entry) => entry.clone(),
            None => return status_response(StatusCode::BAD_REQUEST, "no container"),
        }
    };
    let id = match pods::id_of(&entry) {
        Ok(id) => id,
        Err((code, message)) => return status_response(code, &message),
    };
    let path = ctx.containers.log_path(&id);
    let rotation = entry.meta.log_rotation.unwrap_or_default();
    let options = query.options.clone();
    let read = tokio::task::spawn_blocking(move || logread::read(&path, rotation, &options)).await;
    let (first, follower) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(err)) => {
            let message = format!("cannot read the log of {id}: {err}");
            return status_response(StatusCode::INTERNAL_SERVER_ERROR, &message);
        }
        Err(err) => return status_response(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    };
    let body = if query.follow && !query.previous && entry.is_running() {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let _ = tx.try_send(Bytes::from(first));
        std::thread::spawn(move || follow(&ctx, &id, follower, &tx));
        let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((Ok::<_, std::convert::Infallible>(Frame::data(chunk)), rx))
        });
        StreamBody::new(chunks).boxed()
    } else {
        full(first)
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

/// Sends what the log gains until the container stops or the receiver is gone.
fn follow(
    ctx: &Context,
    id: &strata_runtime::ContainerId,
    mut follower: logread::Follower,
    tx: &mpsc::Sender<Bytes>,
) {
    loop {
        // Whether it ran is read before the poll, so its last lines are in that poll.
        let running = ctx.containers.entry(id).is_ok_and(|e| e.is_running());
        match follower.poll() {
            Ok(chunk) if !chunk.is_empty() => {
                if tx.blocking_send(Bytes::from(chunk)).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(container = %id, error = %err, "cannot follow the log");
                return;
            }
        }
        if !running || follower.exhausted() || tx.is_closed() {
            return;
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_like_the_kubelet() {
        let now: DateTime<Utc> = "2024-01-01T00:10:00Z".parse().unwrap();
        let q = parse_query(
            Some("follow=true&tailLines=5&timestamps=1&limitBytes=100&sinceSeconds=60"),
            now,
        )
        .unwrap();
        assert!(q.follow && !q.previous);
        assert_eq!(q.options.tail_lines, Some(5));
        assert_eq!(q.options.limit_bytes, Some(100));
        assert!(q.options.timestamps);
        assert_eq!(
            q.options.since,
            Some("2024-01-01T00:09:00Z".parse().unwrap())
        );
        let q = parse_query(Some("previous=true&sinceTime=2024-01-01T00:00:00Z"), now).unwrap();
        assert!(q.previous);
        assert_eq!(
            q.options.since,
            Some("2024-01-01T00:00:00Z".parse().unwrap())
        );
        assert!(parse_query(Some("tailLines=-1"), now).is_err());
        assert!(parse_query(Some("tailLines=x"), now).is_err());
        assert!(parse_query(Some("sinceTime=yesterday"), now).is_err());
        assert_eq!(parse_query(None, now).unwrap(), LogQuery::default());
    }
}

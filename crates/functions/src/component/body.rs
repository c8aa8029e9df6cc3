//! The response body of a component, streamed as the instance writes it.
//!
//! `wasi:http` ends the body stream the same way whether the component finished it or its
//! instance was dropped (a trap, a timeout): the channel closes. So the stream ends only
//! once the invocation has ended too, and ends with an error when the invocation failed,
//! so that a client never takes a cut-off body for a whole one.

use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::wasm::InvokeError;

/// A component's response body: frames as the component writes them.
pub type ResponseBody = BoxBody<Bytes, BodyError>;

/// Why a response body stopped short.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The invocation failed (trap, timeout, memory) while writing the body.
    #[error("the component stopped before finishing its response body")]
    Stopped(#[source] InvokeError),
    /// The component aborted the body, or wrote a length other than its `Content-Length`.
    #[error("the component aborted its response body")]
    Aborted(#[source] wasmtime_wasi_http::Error),
}

/// Wraps the body `wasi:http` hands over; `end` carries how the invocation ended.
pub(super) fn streaming(
    inner: HyperOutgoingBody,
    end: oneshot::Receiver<Option<InvokeError>>,
) -> ResponseBody {
    StreamingBody {
        inner: Mutex::new(inner),
        inner_done: false,
        end: Some(end),
    }
    .boxed()
}

struct StreamingBody {
    // The body from wasi:http is `Send` but not `Sync`; the mutex makes this `Sync` (so it
    // fits a `BoxBody`) and is never contended: polling holds `&mut self`.
    inner: Mutex<HyperOutgoingBody>,
    inner_done: bool,
    end: Option<oneshot::Receiver<Option<InvokeError>>>,
}

impl Body for StreamingBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if !this.inner_done {
            let inner = this.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
            match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(error))) => {
                    this.inner_done = true;
                    this.end = None;
                    return Poll::Ready(Some(Err(BodyError::Aborted(error))));
                }
                Poll::Ready(None) => this.inner_done = true,
            }
        }
        let Some(end) = this.end.as_mut() else {
            return Poll::Ready(None);
        };
        let ended = match Pin::new(end).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(ended) => ended,
        };
        this.end = None;
        match ended {
            Ok(None) => Poll::Ready(None),
            Ok(Some(failure)) => Poll::Ready(Some(Err(BodyError::Stopped(failure)))),
            Err(_) => Poll::Ready(Some(Err(BodyError::Stopped(InvokeError::Trap(
                "the invocation ended abnormally".into(),
            ))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner_done && self.end.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.inner.lock() {
            Ok(inner) => inner.size_hint(),
            Err(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    fn inner(text: &'static str) -> HyperOutgoingBody {
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    #[tokio::test]
    async fn a_body_ends_cleanly_when_the_invocation_succeeded() {
        let (end_tx, end_rx) = oneshot::channel();
        let body = streaming(inner("hello"), end_rx);
        end_tx.send(None).unwrap();
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello");
    }

    #[tokio::test]
    async fn a_body_ends_in_an_error_when_the_invocation_failed() {
        let (end_tx, end_rx) = oneshot::channel();
        let mut body = streaming(inner("partial"), end_rx);
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "partial");
        end_tx
            .send(Some(InvokeError::Timeout(std::time::Duration::from_secs(
                1,
            ))))
            .unwrap();
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(
            matches!(error, BodyError::Stopped(InvokeError::Timeout(_))),
            "{error:?}"
        );
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_lost_invocation_is_an_error_too() {
        let (end_tx, end_rx) = oneshot::channel::<Option<InvokeError>>();
        drop(end_tx);
        let error = streaming(inner(""), end_rx).collect().await.unwrap_err();
        assert!(
            matches!(error, BodyError::Stopped(InvokeError::Trap(_))),
            "{error:?}"
        );
    }
}

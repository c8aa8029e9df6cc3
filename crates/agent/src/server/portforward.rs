//! `/portForward/{ns}/{pod}`: refused with a clear message for now. kubectl (1.30+)
//! speaks SPDY/3.1 here — tunnelled in WebSocket (`SPDY/3.1+portforward.k8s.io`), or as
//! a plain SPDY upgrade — with a data and an error stream per connection; serving it
//! needs a SPDY session (zlib headers with the SPDY/3 dictionary) and connections made
//! in the pod's network namespace.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{Body, status_response};
use crate::Context;

/// Answers a port-forward request: not supported yet.
pub async fn serve(
    _ctx: Arc<Context>,
    _req: Request<Incoming>,
    namespace: &str,
    pod: &str,
) -> Response<Body> {
    let message = format!(
        "cannot forward ports of pod {namespace}/{pod}: this node agent does not support port forwarding yet"
    );
    status_response(StatusCode::BAD_REQUEST, &message)
}

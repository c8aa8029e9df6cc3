//! `/portForward/{ns}/{pod}`: not served yet.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{Body, status_response};
use crate::Context;

/// Serves one port-forward request.
pub async fn serve(
    _ctx: Arc<Context>,
    _req: Request<Incoming>,
    _namespace: &str,
    _pod: &str,
) -> Response<Body> {
    status_response(
        StatusCode::BAD_REQUEST,
        "port forwarding is not supported yet",
    )
}

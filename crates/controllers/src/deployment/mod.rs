//! The Deployment controller.

/// Runs the Deployment controller until the future is dropped.
pub async fn run(
    _client: kube::Client,
    _options: crate::ControllerOptions,
) -> Result<(), crate::ControllerError> {
    std::future::pending().await
}
